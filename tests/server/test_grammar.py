"""Raw GBNF grammars (a modelkit extension): the ``grammar`` field of /api/generate and
/api/chat and the extra body field of /v1, a bad grammar refused with its line and column,
and a grammar compiled once per model then copied."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from fixtures.server import RunningServer
from modelkit.errors import RequestError
from modelkit.runtime.gbnf import check_gbnf

YES_NO = 'root ::= "yes" | "no"'
OPTIONS = {"num_predict": 6}


def test_generate_and_chat_follow_a_raw_grammar(server: RunningServer) -> None:
    for path, body in (
        ("/api/generate", {"prompt": "hello", "stream": False}),
        ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": False}),
    ):
        r = httpx.post(
            f"{server.url}{path}",
            json={"model": "tiny", "grammar": YES_NO, "options": OPTIONS, **body},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        text = answer["response"] if path == "/api/generate" else answer["message"]["content"]
        assert text in ("yes", "no")


def test_openai_extra_body_grammar(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=6,
        extra_body={"grammar": YES_NO},
    )
    assert chat.choices[0].message.content in ("yes", "no")
    done = client.completions.create(
        model="tiny", prompt="hello", max_tokens=6, extra_body={"grammar": "root ::= [0-9]+"}
    )
    assert done.choices[0].text.isdigit()


def test_a_bad_grammar_is_a_400_with_its_place(server: RunningServer) -> None:
    r = httpx.post(
        f"{server.url}/api/generate",
        json={
            "model": "tiny",
            "prompt": "hi",
            "grammar": 'root ::= "a" |\n  ( "b" ]',
            "stream": False,
        },
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith("grammar:2:9: unexpected ']'"), error
    r = httpx.post(
        f"{server.url}/api/chat",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "grammar": YES_NO,
            "format": "json",
        },
    )
    assert r.status_code == 400 and "format or grammar" in r.json()["error"]


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        ("root ::= foo", "grammar:1:10: undefined rule foo"),
        ('rot ::= "a"', "grammar: no rule named root"),
        ('root := "x"', "grammar:1:1: expected 'root ::=' to start a rule"),
        ('root ::= ( "a"', "grammar:1:15: unexpected end"),
        ('root ::= "a"\nroot ::= "b"', "grammar:2:1: rule root is defined twice"),
    ],
)
def test_grammar_mistakes_name_their_place(grammar: str, message: str) -> None:
    with pytest.raises(RequestError) as err:
        check_gbnf(grammar)
    assert str(err.value).startswith(message)


def test_the_json_grammars_modelkit_makes_pass_the_check() -> None:
    from modelkit.runtime.constrain import gbnf_for_format

    for fmt in ("json", {"type": "object", "properties": {"n": {"type": "integer"}}}):
        grammar = gbnf_for_format(fmt)
        assert grammar is not None
        check_gbnf(grammar)


def test_a_grammar_is_compiled_once_per_model(tiny_gguf: Path) -> None:
    pytest.importorskip("llama_cpp")
    from modelkit.runtime import LoadedModel, load_params, resolve_options
    from modelkit.runtime.constrain import GrammarGuard

    load = load_params(resolve_options(None, {"num_thread": 1, "num_ctx": 256}))
    with LoadedModel(tiny_gguf, load=load) as model:
        options = model.resolve({"num_predict": 4, "temperature": 0})
        first = "".join(c.text for c in model.generate("hi", options, grammar=YES_NO))
        compiled = model._grammars[YES_NO]
        assert isinstance(compiled, GrammarGuard)
        second = "".join(c.text for c in model.generate("hi", options, grammar=YES_NO))
        assert model._grammars[YES_NO] is compiled  # copied, not parsed again
        assert first == second and first in ("yes", "no")


def test_a_test_case_may_carry_a_grammar(server: RunningServer, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: tiny\ncases:\n  - name: answers-yes-or-no\n    prompt: hello\n"
        f"    grammar: '{YES_NO}'\n    options: {{num_predict: 6}}\n"
        "    assert:\n      - regex: '^(yes|no)$'\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "modelkit", "test", str(spec), "--host", server.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
