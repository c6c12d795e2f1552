"""Lint rules MK0xx: each with a case that fires and one that does not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelkit.validate import lint_text
from modelkit.validate.lint import LintReport, hint_of, rule_id
from modelkit.validate.rules import CHAT_FORMATS, RULES, LintDiagnostic, chat_format
from modelkit.validate.sarif import to_sarif


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


# MK013: a stop for the end of turn of the template's chat format (Go and Jinja2 templates)

CHAT_TEMPLATES: list[tuple[str, str, str]] = [
    (
        "ChatML",
        "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n",
        "<|im_end|>",
    ),
    (
        "ChatML",
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{{ '<|im_start|>assistant\\n' }}",
        "<|im_end|>",
    ),
    (
        "Llama 3",
        "{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|eot_id|>",
    ),
    (
        "Gemma",
        "{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n"
        "{% endfor %}<start_of_turn>model\n",
        "<end_of_turn>",
    ),
    (
        "Phi-3",
        "{{ range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
        "<|end|>",
    ),
    (
        "Command R",
        "{{ range .Messages }}<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{ .Content }}"
        "<|END_OF_TURN_TOKEN|>{{ end }}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        "<|END_OF_TURN_TOKEN|>",
    ),
    (
        "Zephyr",
        "{{ range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n",
        "</s>",
    ),
    (
        "Mistral/Llama 2 [INST]",
        '{{ range .Messages }}{{ if eq .Role "user" }}[INST] {{ .Content }} [/INST]'
        "{{ else }}{{ .Content }}</s>{{ end }}{{ end }}",
        "[INST]",
    ),
]


def chat_modelfile(template: str, *extra: str) -> str:
    """FROM, a PARAMETER, the TEMPLATE on line 3, then ``extra`` lines."""
    lines = ["FROM x", "PARAMETER temperature 0.7", f'TEMPLATE """{template}"""', *extra]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "template", "stop"), CHAT_TEMPLATES)
def test_mk013_missing_stop_for_chat_format(name: str, template: str, stop: str) -> None:
    text = chat_modelfile(template)
    assert diags(text, "MK010") == []
    (d,) = diags(text, "MK013")
    assert where(d) == (3, 1, "warning")
    assert d.message == (
        f'TEMPLATE uses the {name} chat format but no PARAMETER stop "{stop}" is set, '
        "so replies can run on past the end of the turn"
    )
    assert d.hint == f'PARAMETER stop "{stop}"'
    # the hint is the line to add, quoted so that it reads back as the stop string
    fixed = lint_text(text + d.hint + "\n", "Modelfile")
    added = {"command": "parameter", "name": "stop", "value": stop, "line": text.count("\n") + 1}
    assert fixed.instructions[-1] == added
    assert [x for x in fixed.diagnostics if x.rule == "MK013"] == []


def test_mk013_every_format_is_tested() -> None:
    assert {name for name, _, _ in CHAT_TEMPLATES} == {f.name for f in CHAT_FORMATS}
    for name, template, _ in CHAT_TEMPLATES:
        fmt = chat_format(template)
        assert fmt is not None and fmt.name == name


def test_mk013_negative_stop_present() -> None:
    chatml = CHAT_TEMPLATES[0][1]
    for stops in (
        ["PARAMETER stop <|im_end|>"],
        ['PARAMETER stop "<|im_end|>"'],
        ['PARAMETER stop """<|im_end|>"""'],
        ["PARAMETER stop <|im_start|>", "PARAMETER stop <|im_end|>"],
        ["PARAMETER stop <|im_end"],  # a stop inside the end-of-turn string halts there too
    ):
        assert diags(chat_modelfile(chatml, *stops), "MK013") == [], stops
    # the stop must be before or after the TEMPLATE alike
    text = "FROM x\nPARAMETER stop <|eot_id|>\n" + f'TEMPLATE """{CHAT_TEMPLATES[2][1]}"""\n'
    assert diags(text, "MK013") == []


def test_mk013_stop_of_another_format_does_not_count() -> None:
    chatml = CHAT_TEMPLATES[0][1]
    (d,) = diags(chat_modelfile(chatml, "PARAMETER stop <|eot_id|>", 'PARAMETER stop ""'), "MK013")
    assert d.hint == 'PARAMETER stop "<|im_end|>"'


def test_mk013_negative_unknown_format_or_no_template() -> None:
    for template in (
        "{{ .Prompt }}",
        "### Instruction:\n{{ .Prompt }}\n### Response:\n",
        "{{ if .System }}System: {{ .System }}{{ end }}User: {{ .Prompt }}\nAssistant:",
    ):
        assert diags(chat_modelfile(template), "MK013") == [], template
    # no TEMPLATE and FROM a model name: its template (and stops) are not looked up
    assert diags("FROM llama3\n", "MK013") == []
    assert diags("FROM llama3\nPARAMETER temperature 0.7\n", "MK013") == []


def test_mk013_only_the_last_template_counts() -> None:
    chatml = CHAT_TEMPLATES[0][1]
    text = f'FROM x\nTEMPLATE """{chatml}"""\nTEMPLATE {{{{ .Prompt }}}}\n'
    assert diags(text, "MK013") == []
    text = f'FROM x\nTEMPLATE {{{{ .Prompt }}}}\nTEMPLATE """{chatml}"""\n'
    (d,) = diags(text, "MK013")
    assert where(d) == (3, 1, "warning")


def test_mk013_gguf_chat_template_without_template(tiny_gguf: Path) -> None:
    base = tiny_gguf.parent  # tiny.gguf has a ChatML tokenizer.chat_template
    (d,) = diags("# base\nFROM ./tiny.gguf\nPARAMETER temperature 0.7\n", "MK013", base_dir=base)
    assert where(d) == (2, 1, "warning")
    assert d.message == (
        "the GGUF chat template of ./tiny.gguf (there is no TEMPLATE) uses the ChatML chat "
        'format but no PARAMETER stop "<|im_end|>" is set, so replies can run on past the end '
        "of the turn"
    )
    assert d.hint == 'PARAMETER stop "<|im_end|>"'
    text = "FROM ./tiny.gguf\nPARAMETER stop <|im_end|>\n"
    assert diags(text, "MK013", base_dir=base) == []
    # a TEMPLATE replaces the GGUF's chat template
    assert diags("FROM ./tiny.gguf\nTEMPLATE {{ .Prompt }}\n", "MK013", base_dir=base) == []


def test_mk013_gguf_formats_and_negatives(
    tiny_gguf_factory: Callable[..., Path], tmp_path: Path
) -> None:
    llama3 = CHAT_TEMPLATES[2][1]
    base = tiny_gguf_factory("llama3.gguf", chat_template=llama3).parent
    tiny_gguf_factory("plain.gguf", chat_template=None)
    tiny_gguf_factory("alpaca.gguf", chat_template="### Instruction:\n{{ messages }}")
    (base / "fake.gguf").write_bytes(b"not a gguf at all")
    (d,) = diags("FROM ./llama3.gguf\n", "MK013", base_dir=base)
    assert where(d) == (1, 1, "warning") and "Llama 3" in d.message
    assert d.hint == 'PARAMETER stop "<|eot_id|>"'
    for value in ("./plain.gguf", "./alpaca.gguf", "./fake.gguf", "./missing.gguf", "."):
        assert diags(f"FROM {value}\n", "MK013", base_dir=base) == [], value


def test_mk013_gguf_header_read_once(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelkit.store

    calls: list[Path] = []
    real = modelkit.store.read_gguf_info

    def counting(path: Path, **kwargs: object) -> object:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(modelkit.store, "read_gguf_info", counting)
    text = "FROM ./tiny.gguf\nPARAMETER num_ctx 8192\n"
    report = lint_text(text, "Modelfile", base_dir=tiny_gguf.parent)
    assert {rule_id(d) for d in report.diagnostics} == {"MK013", "MK050"}
    assert calls == [tiny_gguf.parent / "tiny.gguf"]


def test_mk013_in_text_json_and_sarif() -> None:
    text = chat_modelfile(CHAT_TEMPLATES[0][1])
    report = lint_text(text, "Modelfile")
    assert report.ok  # a warning
    (line,) = report.to_text("M", with_rules=True).splitlines()
    assert line == (
        'M:3:1: warning[MK013]: TEMPLATE uses the ChatML chat format but no PARAMETER stop "'
        '<|im_end|>" is set, so replies can run on past the end of the turn '
        '(PARAMETER stop "<|im_end|>")'
    )
    (entry,) = report.to_json(with_rules=True)["diagnostics"]
    assert (entry["line"], entry["col"], entry["rule"]) == (3, 1, "MK013")
    assert entry["hint"] == 'PARAMETER stop "<|im_end|>"'
    (run,) = to_sarif(report, "Modelfile")["runs"]
    rules = run["tool"]["driver"]["rules"]
    (meta,) = [r for r in rules if r["id"] == "MK013"]
    assert meta["name"] == "template-missing-stop"
    assert meta["defaultConfiguration"] == {"level": "warning"}
    assert "stop" in meta["shortDescription"]["text"]
    (result,) = run["results"]
    assert result["ruleId"] == "MK013" and rules[result["ruleIndex"]]["id"] == "MK013"
    assert result["level"] == "warning"
    assert result["message"]["text"].endswith('(PARAMETER stop "<|im_end|>")')
    assert result["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 3,
        "startColumn": 1,
    }


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
