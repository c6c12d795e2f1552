"""The assertion kinds beyond plain text: tool calls, similarity, latency and speed budgets;
parametrize tables from files; images and tools carried into requests; --jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.cli import run_cli as run
from fixtures.server import running_server
from modelkit.validate.assertions import Output, ToolCallOut, check
from modelkit.validate.runner import _messages
from modelkit.validate.similarity import cosine, rouge_l, token_f1
from modelkit.validate.spec import Assertion, SpecError, parse_spec

WEATHER = {"type": "object", "required": ["city"], "properties": {"city": {"const": "Paris"}}}


# -- tool calls ----------------------------------------------------------------------------


def test_tool_call_passes_on_a_matching_call() -> None:
    out = Output("", "stop", 5, tool_calls=[ToolCallOut("get_weather", {"city": "Paris"})])
    assert check(Assertion("tool_call", {"name": "get_weather"}), out) is None
    assert check(Assertion("tool_call", {"name": "get_weather", "arguments": WEATHER}), out) is None


@pytest.mark.parametrize(
    ("calls", "wanted"),
    [
        ([], "the model called no tool (wanted get_weather)"),
        ([ToolCallOut("get_time", {})], "no call of get_weather; tool calls: get_time({})"),
        (
            [ToolCallOut("get_weather", {"city": "Rome"})],
            'get_weather({"city": "Rome"}): arguments do not match the schema: city: '
            "'Paris' was expected",
        ),
    ],
)
def test_tool_call_failures_say_what_was_called(calls: list[ToolCallOut], wanted: str) -> None:
    assertion = Assertion("tool_call", {"name": "get_weather", "arguments": WEATHER})
    failure = check(assertion, Output("some text", "stop", 5, tool_calls=calls))
    assert failure is not None
    assert wanted in failure.message


def test_tool_call_one_matching_call_among_several_is_enough() -> None:
    calls = [
        ToolCallOut("get_weather", {"city": "Rome"}),
        ToolCallOut("get_weather", {"city": "Paris"}),
    ]
    assertion = Assertion("tool_call", {"name": "get_weather", "arguments": WEATHER})
    assert check(assertion, Output("", "stop", 9, tool_calls=calls)) is None


# -- similarity ----------------------------------------------------------------------------


def test_similarity_scores() -> None:
    assert rouge_l("The capital is Paris.", "the capital is paris") == 1.0
    assert rouge_l("Paris is the capital", "the capital is Paris") == pytest.approx(0.5)
    assert token_f1("Paris is the capital", "the capital is Paris") == 1.0
    assert token_f1("nothing shared", "the capital") == 0.0
    assert rouge_l("", "") == 1.0 and rouge_l("x", "") == 0.0
    assert cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == 0.0
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_similar_assertion() -> None:
    out = Output("The capital of France is Paris.", "stop", 8)
    near = {"to": "Paris is the capital of France.", "min": 0.5}
    assert check(Assertion("similar", near), out) is None
    assert check(Assertion("similar", {**near, "method": "token_f1", "min": 0.9}), out) is None
    far = check(Assertion("similar", {"to": ["Berlin, Germany", "Madrid"], "min": 0.3}), out)
    assert far is not None
    assert "similarity 0.00 (rouge_l) is below 0.30" in far.message
    assert '"The capital of France is Paris."' in far.message
    # The best of several references counts.
    refs = {"to": ["Berlin", "The capital of France is Paris"], "min": 0.99}
    assert check(Assertion("similar", refs), out) is None


def test_similar_by_embedding_uses_the_backend() -> None:
    out = Output("cat", "stop", 1)
    vectors = {"cat": [1.0, 0.0], "kitten": [0.9, 0.1], "car": [0.0, 1.0]}

    asked: list[str | None] = []

    def embed(texts: list[str], model: str | None) -> list[list[float]]:
        asked.append(model)
        return [vectors[t] for t in texts]

    close = {"to": "kitten", "min": 0.9, "method": "embedding"}
    assert check(Assertion("similar", close), out, embed) is None
    failure = check(Assertion("similar", {**close, "to": "car"}), out, embed)
    assert failure is not None and "(embedding) is below 0.90" in failure.message
    assert check(Assertion("similar", {**close, "model": "nomic-embed"}), out, embed) is None
    assert asked == [None, None, "nomic-embed"]
    no_backend = check(Assertion("similar", close), out)
    assert no_backend is not None and "cannot score similarity" in no_backend.message


# -- latency and speed ---------------------------------------------------------------------


def test_latency_and_speed_budgets() -> None:
    out = Output("hi", "stop", 20, eval_duration=0.5, ttft=0.120, total=0.700)
    assert out.tokens_per_second == pytest.approx(40.0)
    assert check(Assertion("max_ttft_ms", 200), out) is None
    assert check(Assertion("max_total_ms", 1000), out) is None
    assert check(Assertion("min_tokens_per_s", 30), out) is None
    slow_first = check(Assertion("max_ttft_ms", 100), out)
    assert slow_first is not None and "first token after 120 ms, over 100 ms" in slow_first.message
    slow = check(Assertion("max_total_ms", 500), out)
    assert slow is not None and "answer took 700 ms, over 500 ms" in slow.message
    rate = check(Assertion("min_tokens_per_s", 50), out)
    assert rate is not None and "40.0 tokens/s, under 50" in rate.message
    empty = Output("", "stop", 0)
    assert check(Assertion("max_ttft_ms", 100), empty) is not None
    assert check(Assertion("min_tokens_per_s", 1), empty) is not None


# -- spec reading ----------------------------------------------------------------------------


def test_parametrize_from_csv_and_jsonl_tables(tmp_path: Path) -> None:
    (tmp_path / "capitals.csv").write_text("id,country,city\nfr,France,Paris\nit,Italy,Rome\n")
    (tmp_path / "rows.jsonl").write_text('{"n": 1}\n\n{"n": 2}\n')
    spec = parse_spec(
        """\
cases:
  - name: capital
    prompt: "Capital of {country}?"
    parametrize: {file: capitals.csv}
    assert:
      - contains: "{city}"
      - tool_call: {name: lookup, arguments: {properties: {q: {const: "{country}"}}}}
  - name: count
    prompt: "{n}"
    parametrize: {file: rows.jsonl}
    assert: [{max_tokens: 4}]
""",
        tmp_path / "spec.yaml",
    )
    assert [c.name for c in spec.cases] == ["capital[fr]", "capital[it]", "count[0]", "count[1]"]
    assert spec.cases[1].prompt == "Capital of Italy?"
    assert spec.cases[1].asserts[0] == Assertion("contains", "Rome")
    # Placeholders expand inside nested assertion values too.
    schema = spec.cases[1].asserts[1].value["arguments"]
    assert schema["properties"]["q"]["const"] == "Italy"
    assert spec.model is None and spec.modelfile is None


def test_images_and_tools_go_into_the_request(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(b"\x89PNG fake")
    spec = parse_spec(
        """\
model: m
cases:
  - name: look
    system: Be brief.
    messages:
      - {role: user, content: 'What is this?'}
      - {role: assistant, content: A pixel.}
      - {role: user, content: 'And now?'}
    images: [pixel.png]
    tools:
      - type: function
        function: {name: lookup, parameters: {type: object}}
    assert: [{contains: x}]
""",
        tmp_path / "spec.yaml",
    )
    case = spec.cases[0]
    assert case.tools is not None and case.tools[0]["function"]["name"] == "lookup"
    messages = _messages(case)
    assert messages is not None
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[3]["images"] == ["iVBORyBmYWtl"]
    assert "images" not in messages[1]


def test_images_on_a_model_without_vision_are_an_error_case(project: Path, tmp_path: Path) -> None:
    (project / "pixel.png").write_bytes(b"\x89PNG fake")
    spec = project / "vision.yaml"
    spec.write_text(
        "modelfile: Modelfile\ncases:\n  - name: look\n    prompt: What is it?\n"
        "    images: [pixel.png]\n    assert: [{max_tokens: 8}]\n",
        encoding="utf-8",
    )
    code, out, _ = run("test", str(spec))
    assert code == 1
    assert "ERROR  look" in out and "does not support images" in out


def test_spec_without_a_model_needs_one(tmp_path: Path, ollama_models: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("cases:\n  - name: a\n    prompt: p\n    assert: []\n", encoding="utf-8")
    code, _, err = run("test", str(spec))
    assert code == 2
    assert "the spec names no model" in err


# -- running -------------------------------------------------------------------------------

BUDGETS = """\
modelfile: Modelfile
cases:
  - name: fast
    prompt: Say {word}
    parametrize:
      vars: [{word: a}, {word: b}, {word: c}, {word: d}]
    assert:
      - max_ttft_ms: 60000
      - max_total_ms: 60000
      - min_tokens_per_s: 0.001
      - similar: {to: "IMPOSSIBLE zz", min: 0.0}
  - name: too-slow
    prompt: Say hello
    assert:
      - min_tokens_per_s: 100000000
"""


def test_jobs_run_cases_in_parallel_and_keep_order(project: Path) -> None:
    spec = project / "budgets.yaml"
    spec.write_text(BUDGETS, encoding="utf-8")
    report = project / "report.json"
    code, out, _ = run("test", str(spec), "--jobs", "3", "--json", str(report))
    assert code == 1, out
    data = json.loads(report.read_text(encoding="utf-8"))
    names = [c["name"] for c in data["cases"]]
    assert names == ["fast[0]", "fast[1]", "fast[2]", "fast[3]", "too-slow"]
    assert [c["status"] for c in data["cases"]] == ["pass"] * 4 + ["fail"]
    metrics = data["cases"][0]["metrics"]
    assert metrics["eval_count"] == 8 and metrics["done_reason"] == "length"
    assert metrics["ttft_ms"] > 0 and metrics["total_ms"] >= metrics["ttft_ms"]
    assert metrics["tokens_per_s"] > 0
    assert "tokens/s, under 100000000" in out
    assert "first token" in out and "tok/s" in out


def test_embedding_similarity_and_budgets_over_http(
    project: Path, ollama_models: Path, tmp_path: Path
) -> None:
    assert run("build", "--quiet", "-f", str(project / "Modelfile"), "-t", "tiny:http")[0] == 0
    spec = project / "http.yaml"
    spec.write_text(
        """\
cases:
  - name: streamed
    prompt: Say hello
    assert:
      - max_ttft_ms: 60000
      - min_tokens_per_s: 0.001
      - similar: {to: "anything", min: 0.0, method: embedding}
  - name: unlike
    prompt: Say hello
    assert:
      - similar: {to: "anything", min: 1.0, method: embedding}
""",
        encoding="utf-8",
    )
    report = tmp_path / "http.json"
    with running_server(ollama_models, tmp_path) as server:
        code, out, _ = run(
            "test", str(spec), "--host", server.url, "--model", "tiny:http", "--json", str(report)
        )
    assert code == 1, out
    cases = json.loads(report.read_text(encoding="utf-8"))["cases"]
    assert [c["status"] for c in cases] == ["pass", "fail"], out
    assert cases[0]["metrics"]["ttft_ms"] > 0 and cases[0]["metrics"]["tokens_per_s"] > 0
    assert "(embedding) is below 1.00" in cases[1]["failures"][0]["message"]


def test_readme_spec_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing models", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "capitals.csv").write_text("country,city\nFrance,Paris\n", encoding="utf-8")
    spec = parse_spec(example, tmp_path / "modeltest.yaml")
    assert [c.name for c in spec.cases] == ["capital[0]", "weather"]
    kinds = [a.kind for c in spec.cases for a in c.asserts]
    assert {"tool_call", "similar", "max_ttft_ms", "min_tokens_per_s"} <= set(kinds)


def test_regex_is_checked_after_placeholders_are_filled_in(tmp_path: Path) -> None:
    text = """\
model: m
cases:
  - name: lang
    prompt: "Say {lang}"
    parametrize:
      vars: [{lang: "ok"}, {lang: "f(x"}]
    assert:
      - regex: "{lang}"
"""
    with pytest.raises(SpecError) as info:
        parse_spec(text, tmp_path / "spec.yaml")
    lines = info.value.lines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'spec.yaml'}:8: lang[1]: invalid regex 'f(x'")
