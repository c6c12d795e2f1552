"""``modelkit lint``: parse a Modelfile and report what it says and what is wrong with it.

A Modelfile that does not parse (or whose PARAMETERs / REQUIRES do not check) gives one
error diagnostic and no instructions; one that parses gives its instructions plus any
warnings (deprecated parameters). ``to_json()`` is the ``--format json`` output,
``to_text()`` the default one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from modelkit.errors import ModelfileError
from modelkit.modelfile.ast import (
    Diagnostic,
    Instruction,
    Message,
    Modelfile,
    Parameter,
    Position,
    Template,
    instruction_argument,
)
from modelkit.modelfile.parser import parse
from modelkit.template import template_error

__all__ = ["LintReport", "instruction_json", "lint_file", "lint_text"]


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

    def to_json(self) -> dict[str, Any]:
        return {
            "instructions": [dict(i) for i in self.instructions],
            "diagnostics": [
                {"line": d.line, "col": d.col, "severity": d.severity, "message": d.message}
                for d in self.diagnostics
            ],
        }

    def to_text(self, path: str) -> str:
        """``path:line:col: severity: message``, one line per diagnostic ("" when none)."""
        return "".join(
            f"{path}:{d.line}:{d.col}: {d.severity}: {d.message}\n" for d in self.diagnostics
        )


def lint_text(text: str | bytes, path: str = "<string>") -> LintReport:
    """Lint Modelfile text (``bytes`` are decoded like Ollama does)."""
    try:
        mf = parse(text, path=path)
    except ModelfileError as err:
        return LintReport(
            instructions=[],
            diagnostics=[
                Diagnostic(max(err.line, 1), max(err.col, 1), "error", err.message, rule="parse")
            ],
        )
    return LintReport(
        instructions=[instruction_json(inst) for inst in mf.instructions],
        diagnostics=list(mf.warnings) + template_diagnostics(mf, _source_lines(text)),
    )


def _source_lines(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").splitlines()


def template_diagnostics(mf: Modelfile, lines: list[str] | None = None) -> list[Diagnostic]:
    """TEMPLATE syntax errors, placed at their line in the Modelfile."""
    found = []
    for inst in mf.of_type(Template):
        err = template_error(inst.text)
        if err is None:
            continue
        start = inst.value_pos if inst.value_pos.line else inst.pos
        line = start.line + max(err.line, 1) - 1
        col = max(err.col, 0) + 1
        if max(err.line, 1) == 1:
            col += start.col - 1 + _quote_width(lines or [], start)
        found.append(Diagnostic(line, col, "error", f"template error: {err}", rule="template"))
    return found


def _quote_width(lines: list[str], start: Position) -> int:
    """How many quote characters open the value at ``start`` (0, 1 or 3)."""
    if not 0 < start.line <= len(lines):
        return 0
    rest = lines[start.line - 1][start.col - 1 :]
    return 3 if rest.startswith('"""') else 1 if rest.startswith('"') else 0


def lint_file(path: str | os.PathLike[str]) -> LintReport:
    """Lint a Modelfile on disk; an unreadable file is one error diagnostic."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as err:
        message = f"cannot read Modelfile: {err.strerror or err}"
        return LintReport(diagnostics=[Diagnostic(1, 1, "error", message, rule="io")])
    return lint_text(data, name)
