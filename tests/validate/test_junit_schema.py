"""modelkit's JUnit XML (``modelkit test --junit``) validated against tests/validate/junit.xsd,
the JUnit format as Jenkins, GitLab and GitHub's reporters read it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelkit.cli.main import cli
from modelkit.validate.assertions import Failure
from modelkit.validate.reports import to_junit, write_junit
from modelkit.validate.runner import CaseResult

xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is not installed (dev extra)")

SCHEMA = Path(__file__).with_name("junit.xsd")


@pytest.fixture(scope="module")
def schema() -> Any:
    return xmlschema.XMLSchema(SCHEMA)


def serialized(tree: ET.ElementTree) -> bytes:
    """The bytes a CI server would read (as write_junit writes them)."""
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue()


RESULTS = [
    CaseResult("passes", "pass", 0.25, output="Paris"),
    CaseResult(
        "fails-twice",
        "fail",
        1.5,
        output="Lyon",
        failures=[
            Failure('contains: "Paris"', 'output does not contain "Paris"; output: "Lyon"'),
            Failure("max_tokens: 1", "output has 2 tokens, more than 1"),
        ],
    ),
    CaseResult("errors", "error", 0.0, error="model 'missing:latest' not found"),
    CaseResult(
        "control\x1b[0m-chars[0]",
        "fail",
        0.001,
        output="bell \x07 nul \x00 escape \x1b[31m tab\tnewline\n \ufffe end",
        failures=[Failure('regex: "\\\\d"', 'output: "\x0b\x0c"')],
    ),
]


def test_report_with_passing_failing_erroring_and_control_characters_is_valid(
    schema: Any,
) -> None:
    data = serialized(to_junit(RESULTS, "model <&> \x01:latest", suite="modeltest"))
    schema.validate(data)  # raises with the offending element and rule
    root = ET.fromstring(data)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert [e.tag for e in cases["fails-twice"]] == ["failure", "failure", "system-out"]
    assert [e.tag for e in cases["errors"]] == ["error"]
    out = cases["control\\x1b[0m-chars[0]"].find("system-out")
    assert out is not None and "\\x00" in str(out.text) and "\\x07" in str(out.text)


def test_empty_run_is_valid(schema: Any) -> None:
    schema.validate(serialized(to_junit([], "m:latest", suite="empty")))


MODELFILE = "FROM {gguf}\nPARAMETER num_predict 4\nPARAMETER num_ctx 128\nPARAMETER num_thread 1\n"
SPEC = """\
modelfile: Modelfile
cases:
  - name: passes
    prompt: Say hello
    assert:
      - max_tokens: 4
  - name: fails
    prompt: Say hello
    assert:
      - contains: "IMPOSSIBLE-zz-9f3b"
  - name: params
    prompt: "Say {word}"
    parametrize:
      vars: [{word: hi}, {word: "<&>"}]
    assert:
      - stops_with: stop
"""


def test_modelkit_test_junit_file_is_valid(
    schema: Any, tmp_path: Path, tiny_gguf: Path, ollama_models: Path
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    (tmp_path / "Modelfile").write_text(MODELFILE.format(gguf=tiny_gguf), encoding="utf-8")
    spec = tmp_path / "modeltest.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli, ["test", str(spec), "--junit", str(junit)])
    assert result.exit_code == 1, result.output  # "fails" fails
    schema.validate(str(junit))
    root = ET.parse(junit).getroot()
    assert [c.get("name") for c in root.iter("testcase")] == [
        "passes",
        "fails",
        "params[0]",
        "params[1]",
    ]
    # A model that is not in the store: every case is an <error>, still a valid report.
    errored = tmp_path / "errored.xml"
    result = CliRunner().invoke(
        cli, ["test", str(spec), "--model", "no-such-model:latest", "--junit", str(errored)]
    )
    assert result.exit_code == 1, result.output
    schema.validate(str(errored))
    assert ET.parse(errored).getroot().get("errors") == "4"


def test_write_junit_file_is_valid(schema: Any, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, RESULTS, "m:latest", suite="modeltest")
    schema.validate(str(path))


VALID_JENKINS_STYLE = """\
<testsuites name="all" tests="2" failures="1" errors="0" time="1.5">
  <testsuite name="a" tests="2" failures="1" errors="0" skipped="1" time="1.5"
             timestamp="2024-05-01T12:00:00" hostname="ci-1">
    <properties><property name="model" value="m"/></properties>
    <testcase name="one" classname="a" time="0.5"><skipped message="later"/></testcase>
    <testcase name="two" classname="a" time="1">
      <system-out>before</system-out>
      <failure message="no" type="AssertionError">details</failure>
    </testcase>
    <system-out>suite out</system-out>
    <system-err>suite err</system-err>
  </testsuite>
</testsuites>
"""


def test_schema_accepts_the_full_format(schema: Any) -> None:
    schema.validate(VALID_JENKINS_STYLE)


INVALID = [
    ("testcase without a name", '<testcase name="one"', "<testcase"),
    (
        "a count that is not an integer",
        'tests="2" failures="1" errors="0" skipped',
        'tests="two" failures="1" errors="0" skipped',
    ),
    ("a negative time", 'time="0.5"', 'time="-0.5"'),
    ("a timestamp that is not a dateTime", "2024-05-01T12:00:00", "yesterday"),
    ("properties after a testcase", "<properties>", '<testcase name="zero"/><properties>'),
    (
        "system-err before system-out",
        "<system-out>suite out</system-out>\n    <system-err>suite err</system-err>",
        "<system-err>suite err</system-err>\n    <system-out>suite out</system-out>",
    ),
    ("a property without value", '<property name="model" value="m"/>', '<property name="model"/>'),
    ("empty properties", '<property name="model" value="m"/>', ""),
    ("a failure directly in a testsuite", "<properties>", "<failure/><properties>"),
    ("an element inside skipped", '<skipped message="later"/>', "<skipped><failure/></skipped>"),
    ("an unknown element", "</testsuites>", "<results/></testsuites>"),
    ("an unknown attribute", 'classname="a" time="1"', 'classname="a" time="1" duration="1"'),
]


@pytest.mark.parametrize(("why", "old", "new"), INVALID, ids=[w for w, _, _ in INVALID])
def test_schema_rejects_invalid_reports(schema: Any, why: str, old: str, new: str) -> None:
    assert old in VALID_JENKINS_STYLE
    document = VALID_JENKINS_STYLE.replace(old, new, 1)
    assert not schema.is_valid(document), why
