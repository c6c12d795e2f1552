"""``modelkit lint``: parse a Modelfile and report what it says and what is wrong with it.

A Modelfile that does not parse gives one error diagnostic (MK000) and no instructions; one
that parses gives its instructions plus what the rules in :mod:`modelkit.validate.rules`
find (unknown or mistyped PARAMETERs, template problems, missing FROM paths, ...), each
with a rule id and a fix hint. ``to_json()`` is the ``--format json`` output,
``to_text()`` the default one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelkit.errors import ModelfileError
from modelkit.modelfile.ast import (
    Diagnostic,
    Instruction,
    Message,
    Modelfile,
    Parameter,
    instruction_argument,
)
from modelkit.modelfile.parser import decode_modelfile_bytes, parse
from modelkit.validate.rules import (
    RULES,
    LintContext,
    LintDiagnostic,
    check_template_syntax,
    run_rules,
)

__all__ = [
    "LintDiagnostic",
    "LintReport",
    "hint_of",
    "instruction_json",
    "lint_file",
    "lint_text",
    "rule_id",
]


def instruction_json(inst: Instruction) -> dict[str, Any]:
    """One instruction as lint JSON: ``command``, its arguments, ``line``."""
    out: dict[str, Any] = {"command": inst.command}
    if isinstance(inst, Parameter):
        out["name"] = inst.name
        out["value"] = inst.value
    elif isinstance(inst, Message):
        out["role"] = inst.role
        out["content"] = inst.content
    else:
        out["args"] = instruction_argument(inst)
    out["line"] = inst.pos.line
    return out


@dataclass
class LintReport:
    """The instructions of a Modelfile (as JSON-ready dicts) and its diagnostics."""

    instructions: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no diagnostic is an error (warnings are fine)."""
        return not any(d.severity == "error" for d in self.diagnostics)

    def to_json(self, *, with_rules: bool = False) -> dict[str, Any]:
        """``{"instructions": [...], "diagnostics": [{line, col, severity, message}]}``;
        ``with_rules`` adds each diagnostic's ``rule`` id and ``hint``."""
        diagnostics = []
        for d in self.diagnostics:
            out: dict[str, Any] = {
                "line": d.line,
                "col": d.col,
                "severity": d.severity,
                "message": d.message,
            }
            if with_rules:
                out["rule"] = rule_id(d)
                out["hint"] = hint_of(d)
            diagnostics.append(out)
        return {"instructions": [dict(i) for i in self.instructions], "diagnostics": diagnostics}

    def to_text(self, path: str, *, with_rules: bool = False) -> str:
        """``path:line:col: severity: message``, one line per diagnostic ("" when none);
        ``with_rules`` gives ``path:line:col: severity[MKxxx]: message (hint)``."""
        if not with_rules:
            return "".join(
                f"{path}:{d.line}:{d.col}: {d.severity}: {d.message}\n" for d in self.diagnostics
            )
        lines = []
        for d in self.diagnostics:
            hint = hint_of(d)
            tail = f" ({hint})" if hint else ""
            lines.append(
                f"{path}:{d.line}:{d.col}: {d.severity}[{rule_id(d)}]: {d.message}{tail}\n"
            )
        return "".join(lines)


_LEGACY_RULES: dict[str, str] = {
    "parse": "MK000",
    "io": "MK000",
    "template": "MK010",
    "deprecated-parameter": "MK004",
}


def rule_id(diag: Diagnostic) -> str:
    """The ``MKxxx`` id of a diagnostic (older rule names mapped; unknown ones -> MK000)."""
    if diag.rule in RULES:
        return diag.rule
    return _LEGACY_RULES.get(diag.rule, "MK000")


def hint_of(diag: Diagnostic) -> str:
    """A diagnostic's fix hint ("" for a plain :class:`Diagnostic`)."""
    return diag.hint if isinstance(diag, LintDiagnostic) else ""


def lint_text(
    text: str | bytes,
    path: str = "<string>",
    *,
    publish: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
) -> LintReport:
    """Lint Modelfile text (``bytes`` are decoded like Ollama does).

    Syntax errors (and a missing FROM) give one MK000 error and no instructions. Otherwise
    every rule runs over the unvalidated parse, so all problems are reported. Relative FROM
    paths resolve against ``base_dir`` (default: the folder of ``path``, or the current
    folder for ``"<string>"``); ``publish`` turns on MK040 (LICENSE missing).
    """
    try:
        mf = parse(text, path=path, validate=False)
    except ModelfileError as err:
        return LintReport(
            instructions=[],
            diagnostics=[
                LintDiagnostic(
                    max(err.line, 1),
                    max(err.col, 1),
                    "error",
                    err.message,
                    "MK000",
                    "fix the syntax error; nothing else is checked until the Modelfile parses",
                )
            ],
        )
    if base_dir is None:
        base = Path.cwd() if path == "<string>" else Path(path).parent
    else:
        base = Path(base_dir)
    ctx = LintContext(lines=tuple(_source_lines(text)), base_dir=base, publish=publish)
    diagnostics: list[Diagnostic] = list(run_rules(mf, ctx))
    return LintReport(
        instructions=[instruction_json(inst) for inst in mf.instructions],
        diagnostics=diagnostics,
    )


def _source_lines(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = decode_modelfile_bytes(text)
    return text.lstrip("\ufeff").splitlines()


def template_diagnostics(mf: Modelfile, lines: list[str] | None = None) -> list[Diagnostic]:
    """TEMPLATE syntax errors (MK010), placed at their line in the Modelfile."""
    ctx = LintContext(lines=tuple(lines or ()), base_dir=Path.cwd())
    return list(check_template_syntax(mf, ctx))


def lint_file(path: str | os.PathLike[str], *, publish: bool = False) -> LintReport:
    """Lint a Modelfile on disk; an unreadable file is one error diagnostic."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as err:
        message = f"cannot read Modelfile: {err.strerror or err}"
        return LintReport(
            diagnostics=[LintDiagnostic(1, 1, "error", message, "MK000", "check the path")]
        )
    return lint_text(data, name, publish=publish)
