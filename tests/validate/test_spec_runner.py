"""``modelkit test``: YAML specs of prompts and assertions run against the tiny random model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fixtures.cli import run_cli as run
from fixtures.server import running_server
from modelkit.validate.assertions import Output, check
from modelkit.validate.runner import select
from modelkit.validate.spec import Assertion, SpecError, parse_spec

PASSING = """\
modelfile: Modelfile
cases:
  - name: generate
    prompt: Say hello
    assert:
      - max_tokens: 8
      - stops_with: length
      - not_contains: "IMPOSSIBLE-zz-9f3b"
  - name: chat
    messages:
      - {role: user, content: Say hello}
    assert:
      - max_tokens: 8
      - not_contains: "IMPOSSIBLE-zz-9f3b"
"""


def test_passing_spec_writes_junit_and_json(project: Path) -> None:
    spec = project / "modeltest.yaml"
    spec.write_text(PASSING, encoding="utf-8")
    junit, report = project / "junit.xml", project / "report.json"
    code, out, err = run("test", str(spec), "--junit", str(junit), "--json", str(report))
    assert code == 0, out + err
    assert "PASS  generate" in out and "PASS  chat" in out
    assert "2 passed, 0 failed" in out
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert float(suite.get("time", "x")) >= 0
    names = [(c.get("name"), c.get("classname")) for c in suite.iter("testcase")]
    assert names == [("generate", "modeltest"), ("chat", "modeltest")]
    assert not list(suite.iter("failure"))
    data = json.loads(report.read_text(encoding="utf-8"))
    assert [c["status"] for c in data["cases"]] == ["pass", "pass"]
    assert all(isinstance(c["output"], str) and c["duration"] >= 0 for c in data["cases"])
    # -k selects cases by name.
    code, out, _ = run("test", str(spec), "-k", "not chat")
    assert code == 0 and "PASS  generate" in out and "PASS  chat" not in out
    assert "1 passed, 0 failed" in out


def test_every_assertion_kind_can_fail(project: Path) -> None:
    spec = project / "failing.yaml"
    spec.write_text(
        """\
modelfile: Modelfile
cases:
  - name: all-wrong
    prompt: Say hello
    assert:
      - contains: "IMPOSSIBLE-zz-9f3b"
      - not_contains: ""
      - regex: "^IMPOSSIBLE$"
      - equals: "IMPOSSIBLE"
      - json_schema: {type: object}
      - max_tokens: 0
      - stops_with: stop
""",
        encoding="utf-8",
    )
    junit, report = project / "junit.xml", project / "report.json"
    code, out, _ = run("test", str(spec), "--junit", str(junit), "--json", str(report))
    assert code == 1
    assert "FAIL  all-wrong" in out
    for text in (
        'contains: "IMPOSSIBLE-zz-9f3b": output does not contain',
        'not_contains: "": output contains ""',
        'regex: "^IMPOSSIBLE$": output does not match',
        'equals: "IMPOSSIBLE": output is not',
        "json_schema: ",
        "max_tokens: 0: output has 8 tokens, more than 0",
        "stops_with: \"stop\": generation stopped with 'length', not 'stop'",
    ):
        assert text in out, text
    assert "0 passed, 1 failed" in out
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    assert len(list(suite.iter("failure"))) == 7
    case = json.loads(report.read_text(encoding="utf-8"))["cases"][0]
    assert case["status"] == "fail" and len(case["failures"]) == 7
    assert all("output" in f["message"] for f in case["failures"])


def test_assertions_directly() -> None:
    output = Output('{"a": 1}', "stop", 3)
    assert check(Assertion("json_schema", {"type": "object", "required": ["a"]}), output) is None
    failure = check(Assertion("json_schema", {"type": "object", "required": ["b"]}), output)
    assert failure is not None and "'b' is a required property" in failure.message
    assert check(Assertion("regex", r"\"a\": \d"), output) is None
    assert check(Assertion("equals", ' {"a": 1} '), output) is None
    assert check(Assertion("max_tokens", 3), output) is None
    assert check(Assertion("stops_with", "stop"), output) is None
    bad = check(Assertion("json_schema", {}), Output("not json", "stop", 1))
    assert bad is not None and "not JSON" in bad.message and '"not json"' in bad.message


def test_parametrize_expands_placeholders(tmp_path: Path) -> None:
    spec = parse_spec(
        """\
model: tiny
options: {temperature: 0.5}
cases:
  - name: greet
    prompt: "Say {word} to {who} {{json}}"
    parametrize:
      vars:
        - {word: hello, who: Ann}
        - {word: bye, who: Bob}
    assert:
      - contains: "{word}"
      - max_tokens: 4
""",
        tmp_path / "spec.yaml",
    )
    assert [c.name for c in spec.cases] == ["greet[0]", "greet[1]"]
    assert spec.cases[0].prompt == "Say hello to Ann {{json}}"
    assert spec.cases[1].prompt == "Say bye to Bob {{json}}"
    assert spec.cases[1].asserts[0] == Assertion("contains", "bye")
    assert spec.cases[1].asserts[1] == Assertion("max_tokens", 4)
    assert spec.options == {"temperature": 0.5, "seed": 42}
    assert [c.name for c in select(spec.cases, "greet and not [1]")] == ["greet[0]"]
    assert [c.name for c in select(spec.cases, "(x or [1])")] == ["greet[1]"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "model: m\ncases:\n  - name: a\n    prompt: p\n    assert:\n      - contain: x\n",
            6,
            "Additional properties",
        ),
        (
            "model: m\ncases:\n  - name: a\n    prompt: p\n    assert:\n      - max_tokens: many\n",
            6,
            "'many' is not of type 'integer'",
        ),
        ("model: m\ncases:\n  - name: a\n    assert: []\n", 3, "cases.0: needs exactly one of"),
        (
            "model: m\nmodelfile: M\ncases:\n  - name: a\n    prompt: p\n    assert: []\n",
            1,
            "give model or modelfile, not both",
        ),
        (
            "cases:\n  - name: a\n    prompt: p\n    assert:\n      - similar: {to: x, min: 2}\n",
            5,
            "cases.0.assert.0.similar.min: 2 is greater than the maximum of 1",
        ),
        (
            "cases:\n  - name: a\n    prompt: p\n    assert:\n      - tool_call: {args: {}}\n",
            5,
            "'name' is a required property",
        ),
        (
            "cases:\n  - name: a\n    prompt: p\n    parametrize: {file: t.csv}\n    assert: []\n",
            4,
            "cannot read",
        ),
        (
            "cases:\n  - name: a\n    prompt: p\n    images: [nope.png]\n    assert: []\n",
            4,
            "cannot read image",
        ),
        (
            "model: m\ncases:\n  - name: a\n    prompt: p\n    assert:\n      - regex: '('\n",
            6,
            "invalid regex",
        ),
        ("model: m\ncases: [\n", 3, "invalid YAML"),
    ],
)
def test_schema_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.yaml"
    with pytest.raises(SpecError) as info:
        parse_spec(text, path)
    rendered = info.value.lines()
    assert any(r.startswith(f"{path}:{line}: ") and message in r for r in rendered), rendered


def test_invalid_spec_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "model: m\ncases:\n  - name: a\n    prompt: p\n    assert:\n      - stops_with: eos\n",
        encoding="utf-8",
    )
    code, _, err = run("test", str(spec))
    assert code == 2
    assert f"{spec}:6: cases.0.assert.0.stops_with: 'eos' is not one of" in err


def test_host_mode_against_a_server(project: Path, ollama_models: Path, tmp_path: Path) -> None:
    assert run("build", "-f", str(project / "Modelfile"), "-t", "tiny-spec", "--quiet")[0] == 0
    spec = project / "remote.yaml"
    spec.write_text(
        PASSING.replace("modelfile: Modelfile", "model: tiny-spec")
        + '  - name: fails\n    prompt: hi\n    assert:\n      - contains: "IMPOSSIBLE-zz"\n',
        encoding="utf-8",
    )
    report = project / "remote.json"
    with running_server(ollama_models, tmp_path) as server:
        code, out, err = run("test", str(spec), "--host", server.url, "--json", str(report))
    assert code == 1, out + err
    statuses = {c["name"]: c["status"] for c in json.loads(report.read_text())["cases"]}
    assert statuses == {"generate": "pass", "chat": "pass", "fails": "fail"}
    assert 'contains: "IMPOSSIBLE-zz": output does not contain' in out


def test_unknown_model_is_an_error_case(tmp_path: Path, ollama_models: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: no-such-model\ncases:\n  - name: a\n    prompt: p\n    assert: []\n",
        encoding="utf-8",
    )
    junit = tmp_path / "junit.xml"
    code, out, _ = run("test", str(spec), "--junit", str(junit))
    assert code == 1
    assert "ERROR  a" in out and "no-such-model" in out
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")


def test_schema_flag_prints_the_shipped_schema() -> None:
    code, out, _ = run("test", "--schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "modelkit test spec"
    assert "tool_call" in schema["$defs"]["assertion"]["properties"]
