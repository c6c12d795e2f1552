"""SARIF 2.1.0 output and the ``lint`` command's formats, flags and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from modelkit.cli.main import cli
from modelkit.validate import lint_text
from modelkit.validate.rules import RULES
from modelkit.validate.sarif import artifact_uri, to_sarif

BAD = (
    "FROM ./missing.gguf\n"
    "PARAMETER temprature 0.7\n"
    "PARAMETER mirostat 1\n"
    "TEMPLATE {{ .System }}{{ .Prompt }}{{ .Foo }}\n"
)


def check_sarif(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The structure GitHub code scanning needs; returns the results."""
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "modelkit"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == sorted(RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"]
        region = physical["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
    results: list[dict[str, Any]] = run["results"]
    return results


def test_sarif_structure(tmp_path: Path) -> None:
    report = lint_text(BAD, "models/Modelfile", base_dir=tmp_path)
    doc = to_sarif(report, "models/Modelfile")
    json.dumps(doc)
    results = check_sarif(doc)
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("MK020", "error"),
        ("MK001", "error"),
        ("MK004", "warning"),
        ("MK011", "warning"),
    ]
    first = results[1]
    assert first["message"]["text"] == (
        "unknown parameter 'temprature' (did you mean 'temperature'?)"
    )
    physical = first["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "models/Modelfile"
    assert physical["region"] == {"startLine": 2, "startColumn": 11}


def test_sarif_of_clean_file_has_no_results() -> None:
    doc = to_sarif(lint_text("FROM llama3\n"), "Modelfile")
    assert check_sarif(doc) == []


def test_artifact_uri(tmp_path: Path) -> None:
    assert artifact_uri("a/b/Modelfile") == "a/b/Modelfile"
    absolute = artifact_uri(str(tmp_path / "Modelfile"))
    assert absolute.startswith("file:///") and absolute.endswith("/Modelfile")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["lint", *args])
    return result.exit_code, result.output


def test_cli_sarif(tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(BAD)
    code, out = invoke("-f", str(modelfile), "--format", "sarif")
    assert code == 1
    results = check_sarif(json.loads(out))
    assert {r["ruleId"] for r in results} == {"MK020", "MK001", "MK004", "MK011"}

    modelfile.write_text("FROM llama3\nPARAMETER mirostat 1\n")
    code, out = invoke("-f", str(modelfile), "--format", "sarif")
    assert code == 0  # warnings only
    (result,) = check_sarif(json.loads(out))
    assert result["ruleId"] == "MK004" and result["level"] == "warning"


def test_cli_publish_and_text(tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM llama3\n")
    code, out = invoke("-f", str(modelfile))
    assert (code, out) == (0, f"{modelfile}: ok\n")
    code, out = invoke("-f", str(modelfile), "--publish")
    assert code == 0
    assert out.startswith(f"{modelfile}:1:1: warning[MK040]: no LICENSE")


def test_cli_json_keeps_old_keys(tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM llama3\nPARAMETER top_k many\nPARAMETER bogus 1\n")
    code, out = invoke("-f", str(modelfile), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert [i["command"] for i in doc["instructions"]] == ["from", "parameter", "parameter"]
    assert [(d["line"], d["col"], d["severity"], d["rule"]) for d in doc["diagnostics"]] == [
        (2, 17, "error", "MK002"),
        (3, 11, "error", "MK001"),
    ]
    assert all(d["message"] and d["hint"] for d in doc["diagnostics"])
