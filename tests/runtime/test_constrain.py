"""Structured output (``format``): the GBNF grammars and the grammar guard.

The grammar is checked on the tiny random-weight model, whose unconstrained output is
random bytes, so any JSON it produces is the constraint's doing; the real Qwen model
(marked slow) shows the constraint on a model that writes JSON by itself, where the
guard's single-token check is what runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

import llama_cpp

import modelkit.runtime.engine.model as engine_module
from modelkit.cpu import guarded_llama
from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.constrain import GrammarGuard, gbnf_for_format
from modelkit.runtime.engine import Chunk, LoadedModel
from modelkit.runtime.options import load_params, resolve_options

try:  # optional: used when installed, never required
    import jsonschema
except ImportError:  # pragma: no cover - depends on the environment
    jsonschema = None

PROMPT = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "n": {"type": "integer"},
    },
    "required": ["ok", "color"],
    "additionalProperties": False,
}

# (temperature, seed) pairs: greedy plus sampled runs, for some variety in the output.
SAMPLINGS = [(0.0, 1), (1.0, 1), (1.0, 2), (1.0, 3), (1.5, 4), (1.5, 5), (2.0, 6)]


# -- a JSON prefix checker (independent of the grammar under test) --------------------------


class _Incomplete(Exception):
    """The text ended where a valid JSON document could still go on."""


class _PrefixParser:
    """A recursive-descent JSON parser that tells "ended early" from "invalid"."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def next(self) -> str:
        if self.i >= len(self.text):
            raise _Incomplete
        c = self.text[self.i]
        self.i += 1
        return c

    def peek(self) -> str:
        if self.i >= len(self.text):
            raise _Incomplete
        return self.text[self.i]

    def expect(self, ch: str) -> None:
        if self.next() != ch:
            raise ValueError(f"expected {ch!r} at {self.i - 1}")

    def ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t\n\r":
            self.i += 1

    def value(self) -> None:
        c = self.peek()
        if c == "{":
            self.container("}", member=True)
        elif c == "[":
            self.container("]", member=False)
        elif c == '"':
            self.string()
        elif c == "-" or c.isdigit():
            self.number()
        elif c in "tfn":
            for ch in {"t": "true", "f": "false", "n": "null"}[c]:
                self.expect(ch)
        else:
            raise ValueError(f"no JSON value starts with {c!r}")

    def container(self, close: str, *, member: bool) -> None:
        self.next()  # the opening bracket
        self.ws()
        if self.peek() == close:
            self.next()
            return
        while True:
            if member:
                if self.peek() != '"':
                    raise ValueError("object keys are strings")
                self.string()
                self.ws()
                self.expect(":")
                self.ws()
            self.value()
            self.ws()
            c = self.next()
            if c == close:
                return
            if c != ",":
                raise ValueError(f"expected ',' or {close!r}, got {c!r}")
            self.ws()

    def string(self) -> None:
        self.expect('"')
        while True:
            c = self.next()
            if c == '"':
                return
            if c == "\\":
                e = self.next()
                if e == "u":
                    for _ in range(4):
                        if self.next() not in "0123456789abcdefABCDEF":
                            raise ValueError("bad \\u escape")
                elif e not in '"\\/bfnrt':
                    raise ValueError(f"bad escape \\{e}")
            elif ord(c) < 0x20:
                raise ValueError("control character in a string")

    def digits(self, *, at_least_one: bool) -> None:
        if at_least_one and not self.peek().isdigit():
            raise ValueError("expected a digit")
        while self.i < len(self.text) and self.text[self.i].isdigit():
            self.i += 1
        if self.i == len(self.text):
            raise _Incomplete  # the number may go on

    def number(self) -> None:
        if self.peek() == "-":
            self.next()
        if self.next() == "0":
            if self.i == len(self.text):
                raise _Incomplete
        else:
            self.i -= 1
            self.digits(at_least_one=True)
        if self.peek() == ".":
            self.next()
            self.digits(at_least_one=True)
        if self.peek() in "eE":
            self.next()
            if self.peek() in "+-":
                self.next()
            self.digits(at_least_one=True)


def json_prefix_ok(text: str) -> bool:
    """Whether ``text`` is a prefix of some valid JSON document (a whole one included)."""
    parser = _PrefixParser(text)
    try:
        parser.ws()
        parser.value()
        parser.ws()
    except _Incomplete:
        return True
    except ValueError:
        return False
    return parser.i == len(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "{",
        '{"a',
        '{"a":',
        '{"a": tr',
        '{"a": [1, 2.',
        '{"a": -',
        '{"a": 1e',
        "{}",
        "{} \n",
        '{"a\\u00',
        '["x", {"y": null}, false]',
        "0",
        "-12.5E+3 ",
    ],
)
def test_json_prefix_checker_accepts_prefixes(text: str) -> None:
    assert json_prefix_ok(text)


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "{x",
        '{"a" 1',
        '{"a": tx',
        "{}}",
        "[1,]",
        '{"a":1,}',
        "01",
        '{"a\\q',
        "{'a': 1}",
        '"\n"',
        "{} x",
        "--1",
        "1.e5",
    ],
)
def test_json_prefix_checker_rejects_non_json(text: str) -> None:
    assert not json_prefix_ok(text)


def check_schema_instance(value: Any) -> None:
    """SCHEMA, checked by hand (and by jsonschema too when it is installed)."""
    assert isinstance(value, dict), value
    assert {"ok", "color"} <= set(value) <= {"ok", "color", "n"}, value
    assert isinstance(value["ok"], bool), value
    assert value["color"] in ("red", "green", "blue"), value
    if "n" in value:
        assert isinstance(value["n"], int) and not isinstance(value["n"], bool), value
    if jsonschema is not None:
        jsonschema.validate(value, SCHEMA)


# -- gbnf_for_format ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [None, ""])
def test_no_format_is_no_grammar(fmt: Any) -> None:
    assert gbnf_for_format(fmt) is None


def test_json_format_is_the_json_grammar() -> None:
    gbnf = gbnf_for_format("json")
    assert gbnf == str(llama_cpp.llama_grammar.JSON_GBNF)
    assert "root" in gbnf and "object" in gbnf


def test_schema_format_is_a_grammar_of_the_schema() -> None:
    gbnf = gbnf_for_format(SCHEMA)
    assert gbnf is not None
    assert "root ::=" in gbnf
    for literal in ('\\"ok\\"', '\\"color\\"', '\\"red\\"', '\\"blue\\"', '"true"'):
        assert literal in gbnf, literal


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        ("xml", '"xml"'),
        ("JSON", '"JSON"'),
        (3, "3"),
        (True, "true"),
        ([], "[]"),
        (["json"], '["json"]'),
        (1.5, "1.5"),
    ],
)
def test_bad_format_is_a_request_error(fmt: Any, shown: str) -> None:
    with pytest.raises(RequestError) as info:
        gbnf_for_format(fmt)
    assert str(info.value) == (
        f'invalid format: {shown}; expected "json" or a valid JSON Schema object'
    )
    assert isinstance(info.value, InferenceError)  # what the engine's callers catch


@pytest.mark.parametrize(
    "schema",
    [{"type": "frobnicate"}, {"$ref": "#/nope"}, {"type": "object", "properties": 3}],
)
def test_bad_schema_is_a_request_error(schema: dict[str, Any]) -> None:
    with pytest.raises(RequestError, match=r"^invalid JSON schema in format: "):
        gbnf_for_format(schema)


# -- the tiny model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> Iterator[LoadedModel]:
    load = load_params(resolve_options(None, {"num_thread": 1}))
    with LoadedModel(tiny_gguf, load=load) as m:
        yield m


@pytest.fixture
def guards(monkeypatch: pytest.MonkeyPatch) -> list[GrammarGuard]:
    """Every GrammarGuard the engine creates during the test (to read its counters)."""
    made: list[GrammarGuard] = []

    class RecordingGuard(GrammarGuard):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(engine_module, "GrammarGuard", RecordingGuard)
    return made


def opts(temperature: float = 0.0, seed: int = 1, **more: Any) -> Any:
    return resolve_options(None, {"temperature": temperature, "seed": seed, **more})


def streamed(model: LoadedModel, options: Any, grammar: str | None) -> tuple[list[str], Chunk]:
    """The text after each streamed chunk (cumulative) and the final chunk."""
    texts: list[str] = []
    text = ""
    chunks = list(model.generate(PROMPT, options, stream=True, grammar=grammar))
    for chunk in chunks:
        text += chunk.text
        texts.append(text)
    final = chunks[-1]
    assert final.done and final.stats is not None
    return texts, final


def token(model: LoadedModel, text: str) -> int:
    ids = model.tokenize(text, add_special=False, parse_special=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


@pytest.fixture
def json_guard(tiny: LoadedModel) -> Iterator[GrammarGuard]:
    guard = GrammarGuard(tiny.weights.vocab, gbnf_for_format("json") or "", tiny.n_vocab)
    yield guard
    guard.close()


def test_guard_allows_only_what_can_start_json(tiny: LoadedModel, json_guard: GrammarGuard) -> None:
    assert json_guard.allows(token(tiny, "{"))
    for text in ("x", "[", " ", '"', "}", "1"):  # the JSON grammar's root is an object
        assert not json_guard.allows(token(tiny, text)), text
    assert not json_guard.allows(llama_cpp.llama_vocab_eos(tiny.weights.vocab))
    # allows() only checks: nothing was accepted, "{" is still what may come first
    assert json_guard.allows(token(tiny, "{"))


def test_guard_follows_accepted_tokens(tiny: LoadedModel, json_guard: GrammarGuard) -> None:
    eos = llama_cpp.llama_vocab_eos(tiny.weights.vocab)
    json_guard.accept(token(tiny, "{"))
    assert json_guard.allows(token(tiny, "}"))
    assert json_guard.allows(token(tiny, '"'))
    assert not json_guard.allows(token(tiny, "{"))
    assert not json_guard.allows(token(tiny, "x"))
    assert not json_guard.allows(eos)  # the object is not closed yet
    json_guard.accept(token(tiny, "}"))
    assert json_guard.allows(eos)
    assert not json_guard.allows(token(tiny, "x"))
    assert not json_guard.allows(token(tiny, "{"))  # one document only


def test_guard_allows_a_multibyte_token(tiny: LoadedModel) -> None:
    guard = GrammarGuard(tiny.weights.vocab, 'root ::= "Hello" | "Help"', tiny.n_vocab)
    try:
        assert guard.allows(token(tiny, "Hello"))
        assert guard.allows(token(tiny, "H"))
        assert not guard.allows(token(tiny, "x"))
        guard.accept(token(tiny, "Hello"))
        assert guard.allows(llama_cpp.llama_vocab_eos(tiny.weights.vocab))
    finally:
        guard.close()


def test_bad_grammar_fails_before_generating(tiny: LoadedModel) -> None:
    with pytest.raises(InferenceError, match="could not be compiled"):
        tiny.generate(PROMPT, opts(num_predict=4), grammar="root ::= undefined-rule")


def test_unconstrained_tiny_output_is_not_json(tiny: LoadedModel) -> None:
    for temperature, seed in SAMPLINGS[:3]:
        texts, final = streamed(tiny, opts(temperature, seed, num_predict=32), None)
        assert final.done_reason == "length"
        assert not json_prefix_ok(texts[-1]), texts[-1]


def test_json_format_makes_json(tiny: LoadedModel, guards: list[GrammarGuard]) -> None:
    grammar = gbnf_for_format("json")
    stopped = 0
    for temperature, seed in SAMPLINGS:
        texts, final = streamed(tiny, opts(temperature, seed, num_predict=64), grammar)
        for text in texts:
            assert json_prefix_ok(text), text
        assert final.stats is not None
        if final.done_reason == "stop":
            stopped += 1
            assert isinstance(json.loads(texts[-1]), dict)  # the grammar's root is an object
        # every sampled token went through the guard exactly once
        guard = guards[-1]
        assert guard.fast_hits + guard.slow_paths == final.stats.eval_count
        assert guard.slow_paths > 0  # random weights: the grammar had to step in
    assert stopped > 0


def test_schema_format_makes_valid_instances(tiny: LoadedModel, guards: list[GrammarGuard]) -> None:
    grammar = gbnf_for_format(SCHEMA)
    outputs = set()
    for temperature, seed in SAMPLINGS:
        texts, final = streamed(tiny, opts(temperature, seed, num_predict=96), grammar)
        for text in texts:
            assert json_prefix_ok(text), text
        assert final.done_reason == "stop", texts[-1]  # the schema's instances are short
        check_schema_instance(json.loads(texts[-1]))
        outputs.add(texts[-1])
        assert final.stats is not None
        assert guards[-1].fast_hits + guards[-1].slow_paths == final.stats.eval_count
    assert len(outputs) > 1  # sampling varied the answers; all of them were valid


def test_schema_output_cut_by_num_predict_is_a_prefix(tiny: LoadedModel) -> None:
    texts, final = streamed(tiny, opts(num_predict=6), gbnf_for_format(SCHEMA))
    assert final.done_reason == "length"
    assert texts[-1].startswith("{")
    assert json_prefix_ok(texts[-1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(texts[-1])


def test_greedy_guard_matches_llama_cpp_whole_vocabulary_filter(tiny_gguf: Path) -> None:
    """The check-then-filter guard picks what filtering every candidate picks (greedy)."""
    llm = guarded_llama(str(tiny_gguf), n_ctx=2048, n_threads=1, verbose=False)
    try:
        load = load_params(resolve_options(None, {"num_thread": 1}))
        with LoadedModel(tiny_gguf, load=load) as m:
            for fmt in ("json", SCHEMA):
                gbnf = gbnf_for_format(fmt)
                assert gbnf is not None
                options = opts(num_predict=60, repeat_penalty=1.0)
                ours = list(m.generate(PROMPT, options, stream=False, grammar=gbnf))[-1].text
                stock = llm.create_completion(
                    PROMPT,
                    grammar=llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False),
                    temperature=0,
                    max_tokens=60,
                )
                assert ours == stock["choices"][0]["text"]
    finally:
        llm.close()


# -- the real Qwen model --------------------------------------------------------------------


def chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


QWEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "statically_typed": {"type": "boolean"},
        "language": {"enum": ["python", "rust", "go"]},
        "year": {"type": "integer"},
    },
    "required": ["statically_typed", "language", "year"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def qwen(qwen_gguf: Path) -> Iterator[LoadedModel]:
    with LoadedModel(qwen_gguf, load=load_params(resolve_options(None, {"num_ctx": 2048}))) as m:
        yield m


@pytest.mark.slow
def test_qwen_schema_answer_validates(qwen: LoadedModel, guards: list[GrammarGuard]) -> None:
    question = (
        "Is Rust statically typed? Answer in JSON with the keys statically_typed, "
        "language and year (of its first stable release)."
    )
    out = list(
        qwen.generate(
            chatml(question),
            opts(num_predict=96),
            stream=False,
            grammar=gbnf_for_format(QWEN_SCHEMA),
        )
    )[-1]
    assert out.done_reason == "stop", out.text
    value = json.loads(out.text)
    assert isinstance(value, dict)
    assert set(value) == {"statically_typed", "language", "year"}
    assert isinstance(value["statically_typed"], bool)
    assert value["language"] == "rust"
    assert isinstance(value["year"], int) and not isinstance(value["year"], bool)
    if jsonschema is not None:
        jsonschema.validate(value, QWEN_SCHEMA)
    # A real model mostly samples allowed tokens: the single-token check is the common path.
    guard = guards[-1]
    assert out.stats is not None
    assert guard.fast_hits + guard.slow_paths == out.stats.eval_count
    assert guard.fast_hits > guard.slow_paths


@pytest.mark.slow
def test_qwen_json_format_parses(qwen: LoadedModel) -> None:
    question = "Describe the Python programming language in JSON with the keys name and year."
    out = list(
        qwen.generate(
            chatml(question), opts(num_predict=128), stream=False, grammar=gbnf_for_format("json")
        )
    )[-1]
    assert out.done_reason == "stop", out.text
    value = json.loads(out.text)
    assert isinstance(value, dict) and value, out.text


@pytest.mark.slow
def test_qwen_permissive_grammar_changes_nothing(
    qwen: LoadedModel, guards: list[GrammarGuard]
) -> None:
    """A grammar that allows every token takes the fast path at every step."""
    prompt = chatml("Describe the Python programming language.")
    options = opts(num_predict=48)
    free = list(qwen.generate(prompt, options, stream=False))[-1]
    out = list(qwen.generate(prompt, options, stream=False, grammar=r"root ::= [^\x00]*"))[-1]
    assert out.text == free.text
    assert out.stats is not None
    assert guards[-1].fast_hits == out.stats.eval_count
    assert guards[-1].slow_paths == 0
