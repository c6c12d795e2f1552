"""Lint rules MK0xx: each with a case that fires and one that does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelkit.validate import lint_text
from modelkit.validate.lint import LintReport, hint_of, rule_id
from modelkit.validate.rules import RULES, LintDiagnostic


def diags(
    text: str, rule: str, *, publish: bool = False, base_dir: Path | None = None
) -> list[LintDiagnostic]:
    report = lint_text(text, "Modelfile", publish=publish, base_dir=base_dir)
    found = []
    for d in report.diagnostics:
        assert isinstance(d, LintDiagnostic)
        assert d.rule in RULES, d
        assert d.hint, d
        if d.rule == rule:
            found.append(d)
    return found


def where(d: LintDiagnostic) -> tuple[int, int, str]:
    return d.line, d.col, d.severity


# -- parameters ---------------------------------------------------------------------------


def test_mk001_unknown_parameter_reports_all_with_did_you_mean() -> None:
    text = "FROM x\nPARAMETER temprature 0.7\nPARAMETER bogus 1\nPARAMETER top_k many\n"
    found = diags(text, "MK001")
    assert [where(d) for d in found] == [(2, 11, "error"), (3, 11, "error")]
    assert found[0].message == "unknown parameter 'temprature'"
    assert found[0].hint == "did you mean 'temperature'?"
    assert "num_ctx" in found[1].hint
    # parsing went on: the bad value on line 4 is reported too
    assert [where(d) for d in diags(text, "MK002")] == [(4, 17, "error")]


def test_mk001_negative() -> None:
    assert diags("FROM x\nPARAMETER temperature 0.7\nPARAMETER mirostat 1\n", "MK001") == []


def test_mk002_wrong_type() -> None:
    text = "FROM x\nPARAMETER top_k many\nPARAMETER temperature hot\nPARAMETER use_mmap maybe\n"
    found = diags(text, "MK002")
    assert [where(d) for d in found] == [(2, 17, "error"), (3, 23, "error"), (4, 20, "error")]
    assert "invalid int value [many]" in found[0].message
    assert "invalid float value [hot]" in found[1].message
    assert "invalid bool value [maybe]" in found[2].message


def test_mk002_negative() -> None:
    text = "FROM x\nPARAMETER top_k 40\nPARAMETER temperature 0.7\nPARAMETER use_mmap true\n"
    assert diags(text, "MK002") == []


def test_mk003_duplicate_single_valued_parameter() -> None:
    text = "FROM x\nPARAMETER top_k 40\nPARAMETER top_p 0.9\nPARAMETER top_k 20\n"
    (d,) = diags(text, "MK003")
    assert where(d) == (4, 11, "warning")
    assert "line 2" in d.message and "last one wins" in d.message


def test_mk003_negative_stop_accumulates() -> None:
    text = "FROM x\nPARAMETER stop a\nPARAMETER stop b\nPARAMETER top_k 4\n"
    assert diags(text, "MK003") == []


def test_mk004_deprecated_parameter() -> None:
    (d,) = diags("FROM x\nPARAMETER mirostat 1\n", "MK004")
    assert where(d) == (2, 11, "warning")
    assert d.message == "parameter mirostat is deprecated"
    assert diags("FROM x\nPARAMETER seed 1\n", "MK004") == []


def test_mk005_requires_semver() -> None:
    (d,) = diags("FROM x\nREQUIRES banana\n", "MK005")
    assert where(d) == (2, 10, "error")
    assert diags("FROM x\nREQUIRES 0.14.0\n", "MK005") == []


def test_syntax_error_is_mk000_only() -> None:
    report = lint_text("FROM x\nPARAMETER bogus 1\nBOGUS thing\n", "Modelfile")
    assert [rule_id(d) for d in report.diagnostics] == ["MK000"]
    assert not report.ok and report.instructions == []


# -- templates ----------------------------------------------------------------------------


def test_mk010_template_syntax_error() -> None:
    (d,) = diags('FROM x\nTEMPLATE """{{ .Prompt }}\n{{ if .System }}\n"""\n', "MK010")
    assert d.line == 4 and d.severity == "error"
    assert d.message.startswith("template error:")
    assert diags("FROM x\nTEMPLATE {{ .Prompt }}\n", "MK010") == []


def test_mk011_unknown_template_fields() -> None:
    text = (
        'FROM x\nTEMPLATE """{{ .System }} {{ .Foo }}\n'
        '{{ range .Messages }}{{ .Rolee }}{{ end }}"""\n'
    )
    found = diags(text, "MK011")
    assert [where(d) for d in found] == [(2, 30, "warning"), (3, 25, "warning")]
    assert ".Foo" in found[0].message
    assert found[1].hint == "did you mean .Role?"


def test_mk011_negative_known_fields_variables_and_defines() -> None:
    text = (
        'FROM x\nTEMPLATE """{{ define "turn" }}{{ .Content }}{{ end }}'
        "{{- if or .System .Tools }}{{ .System }}{{ end }}"
        '{{- range $i, $m := .Messages }}{{ $m.Role }}{{ template "turn" $m }}'
        "{{ range $m.ToolCalls }}{{ .Function.Name }}{{ .Function.Arguments }}{{ .ID }}{{ end }}"
        "{{ $m.Thinking }}{{ $m.ToolName }}{{ $m.ToolCallID }}{{ end }}"
        "{{ range $.Tools }}{{ .Type }}{{ .Function.Description }}"
        "{{ range $k, $v := .Function.Parameters.Properties }}{{ $v.Enum }}{{ $v.Items }}{{ end }}"
        "{{ .Function.Parameters.Required }}{{ end }}"
        '{{ .Suffix }}{{ .Think }}{{ .ThinkLevel }}{{ .IsThinkSet }}{{ .Response }}"""\n'
    )
    assert diags(text, "MK010") == []
    assert diags(text, "MK011") == []


def test_mk012_template_without_prompt_or_messages() -> None:
    (d,) = diags("FROM x\nTEMPLATE {{ .System }}\n", "MK012")
    assert where(d) == (2, 1, "error")
    assert diags("FROM x\nTEMPLATE {{ .System }}{{ .Prompt }}\n", "MK012") == []
    assert diags("FROM x\nTEMPLATE {{ range .Messages }}{{ .Content }}{{ end }}\n", "MK012") == []
    # a reranker template renders .Query / .Document instead
    assert diags("FROM x\nTEMPLATE Query: {{ .Query }} Document: {{ .Document }}\n", "MK012") == []
    # a template that does not parse is MK010 only
    assert diags("FROM x\nTEMPLATE {{ if .System }}\n", "MK012") == []


def test_jinja_template_is_not_checked_for_fields() -> None:
    text = 'FROM x\nTEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""\n'
    assert diags(text, "MK011") == [] and diags(text, "MK012") == []


# -- FROM, MESSAGE, LICENSE, num_ctx -------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["./missing.gguf", "../missing", "/nonexistent/model.gguf", "~/nope/x", "m.gguf"]
)
def test_mk020_missing_from_path(tmp_path: Path, value: str) -> None:
    text = f"FROM {value}\n"
    (d,) = diags(text, "MK020", base_dir=tmp_path)
    assert where(d) == (1, 6, "error")
    assert value in d.message


def test_mk020_negative(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "weights").mkdir()
    for value in ("./model.gguf", "model.gguf", "./weights", "llama3", "llama3:8b"):
        assert diags(f"FROM {value}\n", "MK020", base_dir=tmp_path) == [], value
    # relative to the Modelfile's folder by default
    modelfile = tmp_path / "Modelfile"
    assert [
        d.rule
        for d in lint_text("FROM ./model.gguf\n", str(modelfile)).diagnostics
        if d.rule == "MK020"
    ] == []


def test_mk030_impossible_message_sequences() -> None:
    text = (
        "FROM x\nMESSAGE system be nice\nMESSAGE assistant hi\nMESSAGE user q\n"
        "MESSAGE assistant a\nMESSAGE assistant b\n"
    )
    found = diags(text, "MK030")
    assert [where(d) for d in found] == [(3, 1, "warning"), (6, 1, "warning")]
    assert "first" in found[0].message and "in a row" in found[1].message


def test_mk030_negative() -> None:
    text = (
        "FROM x\nMESSAGE system s\nMESSAGE user q\nMESSAGE assistant a\n"
        "MESSAGE system again\nMESSAGE user q2\nMESSAGE user q3\nMESSAGE assistant a2\n"
    )
    assert diags(text, "MK030") == []


def test_mk040_license_only_when_publishing() -> None:
    (d,) = diags("FROM x\n", "MK040", publish=True)
    assert where(d) == (1, 1, "warning")
    assert diags("FROM x\n", "MK040") == []
    assert diags("FROM x\nLICENSE MIT\n", "MK040", publish=True) == []


def test_mk050_num_ctx_beyond_trained_context(tiny_gguf: Path) -> None:
    base = tiny_gguf.parent  # tiny.gguf, trained with context_length 2048
    text = "FROM ./tiny.gguf\nPARAMETER num_ctx 1024\nPARAMETER num_ctx 8192\n"
    (d,) = diags(text, "MK050", base_dir=base)
    assert where(d) == (3, 19, "warning")
    assert "8192" in d.message and "2048" in d.message


def test_mk050_negative(tiny_gguf: Path, tmp_path: Path) -> None:
    base = tiny_gguf.parent
    assert diags("FROM ./tiny.gguf\nPARAMETER num_ctx 2048\n", "MK050", base_dir=base) == []
    # not a local GGUF: nothing to compare with
    assert diags("FROM llama3\nPARAMETER num_ctx 999999\n", "MK050") == []
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf at all")
    text = "FROM ./fake.gguf\nPARAMETER num_ctx 999999\n"
    assert diags(text, "MK050", base_dir=tmp_path) == []


# -- output shapes ------------------------------------------------------------------------

MANY = "FROM x\nPARAMETER temprature 0.7\nPARAMETER mirostat 1\nTEMPLATE {{ .System }}\n"


def test_json_keeps_old_keys_and_adds_rule_and_hint() -> None:
    report = lint_text(MANY, "Modelfile")
    plain = report.to_json()
    for d in plain["diagnostics"]:
        assert list(d) == ["line", "col", "severity", "message"]
    rich = report.to_json(with_rules=True)
    assert rich["instructions"] == plain["instructions"]
    assert [d["rule"] for d in rich["diagnostics"]] == ["MK001", "MK004", "MK012"]
    for old, new in zip(plain["diagnostics"], rich["diagnostics"], strict=True):
        assert list(new) == ["line", "col", "severity", "message", "rule", "hint"]
        assert {k: new[k] for k in old} == old
        assert new["hint"]
    json.dumps(rich)


def test_text_format_with_rules() -> None:
    report = lint_text(MANY, "Modelfile")
    lines = report.to_text("M", with_rules=True).splitlines()
    assert lines[0] == (
        "M:2:11: error[MK001]: unknown parameter 'temprature' (did you mean 'temperature'?)"
    )
    assert lines[1].startswith("M:3:11: warning[MK004]: parameter mirostat is deprecated (")
    assert lines[2].startswith("M:4:1: error[MK012]: ")
    # the plain format is unchanged
    assert (
        report.to_text("M").splitlines()[1] == "M:3:11: warning: parameter mirostat is deprecated"
    )


def test_exit_status_follows_errors() -> None:
    assert lint_text("FROM x\nPARAMETER mirostat 1\n").ok
    assert not lint_text("FROM x\nPARAMETER top_k x\n").ok


def test_plain_diagnostics_map_to_rule_ids() -> None:
    from modelkit.modelfile.ast import Diagnostic

    report = LintReport(diagnostics=[Diagnostic(1, 1, "warning", "m", rule="template")])
    assert rule_id(report.diagnostics[0]) == "MK010"
    assert hint_of(report.diagnostics[0]) == ""
    assert report.to_text("M", with_rules=True) == "M:1:1: warning[MK010]: m\n"
