"""``lint_text``: the JSON and text shapes the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

from modelkit.validate import LintReport, lint_file, lint_text
from modelkit.validate.lint import instruction_json

GOOD = (
    "# a comment\n"
    "FROM llama3\n"
    "PARAMETER temperature 0.7\n"
    "PARAMETER mirostat 1\n"
    'SYSTEM """Be brief."""\n'
    "MESSAGE user Hi there\n"
    "TEMPLATE {{ .Prompt }}\n"
    "ADAPTER ./lora.gguf\n"
    "LICENSE MIT\n"
    "REQUIRES 0.14.0\n"
    "DRAFT ./draft\n"
    "RENDERER qwen3\n"
    "PARSER qwen3\n"
)


def test_lint_json_shape() -> None:
    report = lint_text(GOOD, "Modelfile")
    assert report.ok
    assert report.to_json() == {
        "instructions": [
            {"command": "from", "args": "llama3", "line": 2},
            {"command": "parameter", "name": "temperature", "value": "0.7", "line": 3},
            {"command": "parameter", "name": "mirostat", "value": "1", "line": 4},
            {"command": "system", "args": "Be brief.", "line": 5},
            {"command": "message", "role": "user", "content": "Hi there", "line": 6},
            {"command": "template", "args": "{{ .Prompt }}", "line": 7},
            {"command": "adapter", "args": "./lora.gguf", "line": 8},
            {"command": "license", "args": "MIT", "line": 9},
            {"command": "requires", "args": "0.14.0", "line": 10},
            {"command": "draft", "args": "./draft", "line": 11},
            {"command": "renderer", "args": "qwen3", "line": 12},
            {"command": "parser", "args": "qwen3", "line": 13},
        ],
        "diagnostics": [
            {
                "line": 4,
                "col": 11,
                "severity": "warning",
                "message": "parameter mirostat is deprecated",
            }
        ],
    }
    # key order is part of the shape
    first = report.to_json()["instructions"][1]
    assert list(first) == ["command", "name", "value", "line"]
    assert list(report.to_json()["diagnostics"][0]) == ["line", "col", "severity", "message"]
    json.dumps(report.to_json())  # serialisable as is


def test_lint_text_output() -> None:
    report = lint_text(GOOD, "Modelfile")
    assert report.to_text("Modelfile") == (
        "Modelfile:4:11: warning: parameter mirostat is deprecated\n"
    )
    assert lint_text("FROM x\n", "Modelfile").to_text("Modelfile") == ""


def test_parse_error_is_one_error_diagnostic() -> None:
    report = lint_text("FROM x\nSYSTEM ok\nMESSAGE robot hi\n", "Modelfile")
    assert not report.ok
    assert report.instructions == []
    assert report.to_json() == {
        "instructions": [],
        "diagnostics": [
            {
                "line": 3,
                "col": 9,
                "severity": "error",
                "message": 'message role must be one of "system", "user", or "assistant"',
            }
        ],
    }
    assert report.to_text("Modelfile") == (
        'Modelfile:3:9: error: message role must be one of "system", "user", or "assistant"\n'
    )


def test_typing_errors_and_no_from_are_errors() -> None:
    report = lint_text("FROM x\nPARAMETER top_k many\n", "M")
    assert not report.ok
    (diag,) = report.diagnostics
    assert (diag.line, diag.col, diag.severity) == (2, 17, "error")
    assert "invalid int value [many]" in diag.message
    (diag,) = lint_text("", "M").diagnostics
    assert (diag.line, diag.col, diag.message) == (1, 1, "no FROM line")


def test_lint_bytes_and_files(tmp_path: Path) -> None:
    data = b"\xff\xfe" + "FROM x\nSYSTEM hi\n".encode("utf-16-le")
    assert lint_text(data, "M").instructions[1] == {"command": "system", "args": "hi", "line": 2}
    path = tmp_path / "Modelfile"
    path.write_bytes(data)
    assert lint_file(path).ok
    missing = lint_file(tmp_path / "missing")
    assert not missing.ok
    assert "cannot read Modelfile" in missing.diagnostics[0].message


def test_empty_report_is_ok() -> None:
    assert LintReport().ok
    assert LintReport().to_json() == {"instructions": [], "diagnostics": []}


def test_instruction_json_of_hand_built_nodes() -> None:
    from modelkit.modelfile import From, Position

    assert instruction_json(From("x", pos=Position(7, 1))) == {
        "command": "from",
        "args": "x",
        "line": 7,
    }
