"""AST -> canonical Modelfile text that parses back to the same AST.

The layout is Ollama's ``Command.String``: one instruction per line, upper-case words,
``PARAMETER name value``, ``MESSAGE role text``. The quoting differs where Ollama's would
not round-trip: each value is written bare when that reads back the same, else in
``"..."`` or in triple quotes (those first when the value holds a quote, as Ollama does),
choosing the first form whose reading (by Ollama's rules) is the value itself. A value no
form can carry raises :class:`ModelfileError` naming the instruction, rather than producing
text that means something else:

* a non-printable character (Ollama drops those while reading);
* a multi-line value in which some line would close the quote early -- e.g. a line ending
  in one quote *and* a line ending in three (or a start with two quotes).
"""

from __future__ import annotations

import re
from typing import Final

from modelkit.errors import ModelfileError
from modelkit.modelfile.ast import (
    Instruction,
    Message,
    Modelfile,
    Parameter,
    instruction_argument,
)
from modelkit.modelfile.parser import is_go_printable

__all__ = ["format_instruction", "format_modelfile", "quote_value"]

_NAME: Final = re.compile(r"[A-Za-z0-9_]*")
_ROLES: Final = frozenset({"system", "user", "assistant"})
_TRIM: Final = " \t\r\n"
_NEWLINES: Final = re.compile(r"[\r\n]")


def _unquote(trimmed: str) -> str | None:
    """Ollama's unquote of a trimmed value buffer; ``None`` where it is still open."""
    if trimmed.startswith('"""'):
        return trimmed[3:-3] if len(trimmed) >= 6 and trimmed.endswith('"""') else None
    if trimmed.startswith('"'):
        return trimmed[1:-1] if len(trimmed) >= 2 and trimmed.endswith('"') else None
    return trimmed


def _reads_back(written: str) -> str | None:
    """The value Ollama reads from ``written`` (the text after ``WORD ``), if it ends there.

    ``None`` when a newline inside ``written`` would already end the value (leaving the rest
    to be read as more instructions) or when the end does not close it. At each newline the
    value so far, trimmed, must still be open; only the last line may close it.
    """
    begin = len(written) - len(written.lstrip(_TRIM))
    end = begin  # end of the trimmed text before the current newline
    line_start = 0
    for newline in _NEWLINES.finditer(written):
        kept = written[line_start : newline.start()].rstrip(_TRIM)
        if kept:
            end = max(end, line_start + len(kept))
        line_start = newline.end()
        if _closes(written, begin, end):
            return None
    return _unquote(written.strip(_TRIM))


def _closes(text: str, begin: int, end: int) -> bool:
    """Whether ``text[begin:end]`` (a trimmed buffer) unquotes, without copying it."""
    size = end - begin
    if text.startswith('"""', begin, end):
        return size >= 6 and text.endswith('"""', begin, end)
    if text.startswith('"', begin, end):
        return size >= 2 and text.endswith('"', begin, end)
    return True


def quote_value(value: str, what: str = "value") -> str:
    """``value`` as Modelfile text that reads back as exactly ``value``.

    ``what`` names the instruction for the error raised when no form can carry it.
    """
    for ch in value:
        if ch not in "\t\r\n" and not is_go_printable(ch):
            raise ModelfileError(
                f"cannot write {what}: it contains the non-printable character "
                f"U+{ord(ch):04X}, which Modelfile parsing drops"
            )
    if (
        value
        and value == value.strip(_TRIM)
        and not value.startswith('"')
        and _NEWLINES.search(value) is None
    ):
        return value
    forms = ['"' + value + '"', '"""' + value + '"""']
    if '"' in value:  # like Ollama: text with quotes reads better in triple quotes
        forms.reverse()
    for written in forms:
        if _reads_back(written) == value:
            return written
    raise ModelfileError(
        f"cannot write {what}: no quoting reads it back unchanged (a line inside it would "
        "end the quoted text early)"
    )


def format_instruction(inst: Instruction) -> str:
    """One instruction as a line of Modelfile text (without the newline)."""
    word = inst.command.upper()
    if isinstance(inst, Parameter):
        if _NAME.fullmatch(inst.name) is None:
            raise ModelfileError(
                f"cannot write PARAMETER {inst.name!r}: a parameter name is letters, digits "
                "and '_' only"
            )
        value = quote_value(inst.value, f"PARAMETER {inst.name}")
        return f"PARAMETER {inst.name} {value}"
    if isinstance(inst, Message):
        if inst.role not in _ROLES:
            raise ModelfileError(
                f"cannot write MESSAGE {inst.role!r}: the role must be system, user or assistant"
            )
        return f"MESSAGE {inst.role} {quote_value(inst.content, f'MESSAGE {inst.role}')}"
    return f"{word} {quote_value(instruction_argument(inst), word)}"


def format_modelfile(mf: Modelfile) -> str:
    """Canonical text for ``mf``: one line per instruction, in order, each ending in ``\\n``.

    ``parse(format_modelfile(mf)) == mf`` for every AST whose values can be written; the
    others raise :class:`ModelfileError` (with the instruction's position when known).
    """
    lines: list[str] = []
    for inst in mf.instructions:
        try:
            lines.append(format_instruction(inst) + "\n")
        except ModelfileError as err:
            raise ModelfileError(
                err.message, path=mf.path, line=inst.pos.line, col=inst.pos.col
            ) from None
    return "".join(lines)
