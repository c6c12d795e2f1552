"""Modelfile text -> typed, validated AST, with Ollama's exact rules and error texts.

The Lark grammar (``grammar/modelfile.lark``) does the parsing (LALR, contextual lexer); it
is total, so mistakes come back as error productions, and the first one (in document order)
stops the parse and becomes a :class:`~modelkit.errors.ModelfileError` carrying the file, the
real 1-based line and column, the offending line and Ollama's message. Before parsing, every
non-printable character (Go's ``strconv.IsPrint``) is replaced by NUL, which the grammar
treats as "invisible"; Python's ``re`` has no Unicode category classes to say that itself.
Then it checks what Ollama checks when it builds the create request: at least one FROM, each
PARAMETER's name and type, REQUIRES being semver.

Positions count characters (code points) and treat CRLF as one line break; a lone CR or LF
is one too. (Ollama counts CR and LF separately, so its line numbers drift after CRLF.)
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import unicodedata
from collections.abc import Callable
from typing import Any, Final, NoReturn

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import LarkError

from modelkit.errors import ModelfileError
from modelkit.modelfile.ast import (
    Adapter,
    Diagnostic,
    Draft,
    From,
    Instruction,
    License,
    Message,
    Modelfile,
    Parameter,
    Parser,
    Position,
    Renderer,
    Requires,
    System,
    Template,
)
from modelkit.modelfile.params import (
    DEPRECATED_PARAMETERS,
    ParameterError,
    parse_parameter_value,
)
from modelkit.resources import grammar_text

__all__ = [
    "INVALID_COMMAND",
    "INVALID_ROLE",
    "NO_FROM",
    "REQUIRES_NOT_SEMVER",
    "UNEXPECTED_EOF",
    "decode_modelfile_bytes",
    "is_go_printable",
    "is_valid_requires",
    "parse",
    "parse_file",
]

# Ollama's error texts.
NO_FROM: Final = "no FROM line"
INVALID_COMMAND: Final = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
INVALID_ROLE: Final = 'message role must be one of "system", "user", or "assistant"'
UNEXPECTED_EOF: Final = "unexpected EOF"
REQUIRES_NOT_SEMVER: Final = "requires must be a valid semver (e.g. 0.14.0)"

_NONPRINT: Final = "\x00"  # what every non-printable character becomes for the grammar

_SIMPLE: Final[dict[str, Callable[..., Instruction]]] = {
    "from_": lambda v, **kw: From(v, **kw),
    "template": lambda v, **kw: Template(v, **kw),
    "system": lambda v, **kw: System(v, **kw),
    "adapter": lambda v, **kw: Adapter(v, **kw),
    "license": lambda v, **kw: License(v, **kw),
    "requires": lambda v, **kw: Requires(v, **kw),
    "draft": lambda v, **kw: Draft(v, **kw),
    "renderer": lambda v, **kw: Renderer(v, **kw),
    "parser_": lambda v, **kw: Parser(v, **kw),
}


@functools.cache
def _grammar() -> Lark:
    return Lark(
        grammar_text("modelfile.lark"),
        parser="lalr",
        lexer="contextual",
        start="start",
        maybe_placeholders=False,
        transformer=_ErrorProductions(),
    )


# -- characters ------------------------------------------------------------------------------


@functools.cache
def is_go_printable(ch: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols, ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


_MAYBE_NONPRINT: Final = re.compile(r"[^\t\n\r\x20-\x7e]")


def _mark_nonprintables(text: str) -> str:
    """Replace each non-printable character except tab/CR/LF by NUL (same length)."""

    def one(match: re.Match[str]) -> str:
        ch = match.group()
        return ch if is_go_printable(ch) else _NONPRINT

    return _MAYBE_NONPRINT.sub(one, text)


def decode_modelfile_bytes(data: bytes) -> str:
    """Decode like Ollama: UTF-8 (optional BOM) or UTF-16 LE/BE with a BOM; BOM dropped.

    Invalid sequences become U+FFFD, as Go's decoder does.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode("utf-8", errors="replace")


# -- positions -------------------------------------------------------------------------------

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


class _Source:
    """The decoded text, its line table and the path, for positions and error messages."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]

    def position(self, offset: int) -> Position:
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return Position(index + 1, offset - self.line_starts[index] + 1)

    def line_text(self, line: int) -> str:
        start = self.line_starts[line - 1]
        match = _LINE_BREAK.search(self.text, start)
        return self.text[start : match.start() if match else len(self.text)]

    def error(self, message: str, offset: int) -> ModelfileError:
        where = self.position(offset)
        return ModelfileError(
            message,
            path=self.path,
            line=where.line,
            col=where.col,
            source_line=self.line_text(where.line),
        )

    def error_at(self, message: str, where: Position) -> ModelfileError:
        return ModelfileError(
            message,
            path=self.path,
            line=where.line,
            col=where.col,
            source_line=self.line_text(where.line) if where.line > 0 else None,
        )


# -- tree -> AST -----------------------------------------------------------------------------


class _Problem(Exception):
    """An error production, raised while parsing so that nothing after it is read."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _start(token: Token) -> int:
    offset = token.start_pos or 0
    return offset + 1 if str(token).startswith(_NONPRINT) else offset


def _end(token: Token) -> int:
    return token.end_pos if token.end_pos is not None else 0


def _value_start(token: Token) -> int:
    """Offset of a value's first character: after the separator and any blanks."""
    raw = str(token)
    skip = 1
    while skip < len(raw) and raw[skip] in " \t" + _NONPRINT:
        skip += 1
    return (token.start_pos or 0) + skip


class _ErrorProductions(Transformer[Token, Any]):
    """Applied by the LALR parser as it reduces: raises at the first error production.

    Error productions are reduced in document order, so the first one raised is the first
    mistake, and the rest of the input is never read.
    """

    def unknown_command(self, children: list[Token]) -> NoReturn:
        raise _Problem(INVALID_COMMAND, children[0].start_pos or 0)

    def command_at_eof(self, children: list[Token]) -> NoReturn:
        raise _Problem(UNEXPECTED_EOF, _end(children[-1]))

    def at_eof(self, children: list[Token]) -> NoReturn:
        raise _Problem(UNEXPECTED_EOF, _end(children[-1]))

    def name_cut(self, children: list[Token]) -> NoReturn:
        # Ollama reports the name/role read so far: "unexpected EOF: param1".
        name = children[-1]
        raise _Problem(f"{UNEXPECTED_EOF}: {str(name)[1:]}", _end(name))

    def bad_role(self, children: list[Token]) -> NoReturn:
        raise _Problem(INVALID_ROLE, (children[1].start_pos or 0) + 1)

    def value(self, children: list[Token]) -> Token:
        token = children[0]
        if token.type == "UNTERMINATED_VALUE":
            raise _Problem(UNEXPECTED_EOF, _value_start(token))
        return token


def _value_text(token: Token) -> str:
    """A value's text with Ollama's semantics: trimmed, unquoted, non-printables dropped."""
    if token.type == "VALUE_EMPTY":
        return ""
    text = str(token)[1:].replace(_NONPRINT, "").strip(" \t")
    if token.type == "VALUE_QUOTED":
        return text[1:-1]
    if token.type == "VALUE_TRIPLE_QUOTED":
        return text[3:-3]
    return text  # VALUE_BARE


def _instruction(node: Tree[Token], src: _Source) -> Instruction:
    """One instruction node (keyword token, optional name/role token, value token)."""
    tokens = [child for child in node.children if isinstance(child, Token)]
    keyword, value_token = tokens[0], tokens[-1]
    value = _value_text(value_token)
    pos = src.position(_start(keyword))
    value_pos = src.position(_value_start(value_token))
    rule = str(node.data)
    if rule == "parameter":
        name_token = tokens[1]
        return Parameter(
            str(name_token)[1:],
            value,
            pos=pos,
            value_pos=value_pos,
            name_pos=src.position((name_token.start_pos or 0) + 1),
        )
    if rule == "message":
        return Message(str(tokens[1])[1:], value, pos=pos, value_pos=value_pos)
    return _SIMPLE[rule](value, pos=pos, value_pos=value_pos)


# -- REQUIRES --------------------------------------------------------------------------------

_NUM: Final = r"(?:0|[1-9][0-9]*)"
_PRERELEASE_ID: Final = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID: Final = r"[0-9A-Za-z-]+"
_SEMVER: Final = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}"
    rf"(?:-{_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*)?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?)?)?"
)


def is_valid_requires(version: str) -> bool:
    """Ollama's REQUIRES check: ``v`` added if missing, then Go's ``semver.IsValid``.

    ``v1`` and ``v1.2`` are valid shorthands; a prerelease or build suffix needs all three
    numbers; no leading zeros.
    """
    candidate = version if version.startswith("v") else "v" + version
    return _SEMVER.fullmatch(candidate) is not None


# -- parse -----------------------------------------------------------------------------------


def _deprecations(mf: Modelfile) -> tuple[Diagnostic, ...]:
    """A warning for each deprecated PARAMETER (Ollama prints and skips them)."""
    return tuple(
        Diagnostic(
            inst.name_pos.line,
            inst.name_pos.col,
            "warning",
            f"parameter {inst.name} is deprecated",
            rule="deprecated-parameter",
        )
        for inst in mf.of_type(Parameter)
        if inst.name in DEPRECATED_PARAMETERS
    )


def _check(mf: Modelfile, src: _Source) -> None:
    """What Ollama checks while building the create request, in instruction order."""
    for inst in mf.instructions:
        if isinstance(inst, Requires) and not is_valid_requires(inst.version):
            raise src.error_at(REQUIRES_NOT_SEMVER, inst.value_pos)
        if not isinstance(inst, Parameter) or inst.name in DEPRECATED_PARAMETERS:
            continue
        try:
            parse_parameter_value(inst.name, inst.value)
        except ParameterError as err:
            where = inst.value_pos if err.value is not None else inst.name_pos
            raise err.at(
                path=src.path,
                line=where.line,
                col=where.col,
                source_line=src.line_text(where.line),
            ) from None


def parse(text: str | bytes, path: str = "<string>", *, validate: bool = True) -> Modelfile:
    """Parse and validate Modelfile text.

    ``bytes`` are decoded like Ollama does (UTF-8 with optional BOM, UTF-16 with BOM); a
    leading BOM in a ``str`` is ignored too. Raises :class:`ModelfileError` (or its subclass
    :class:`~modelkit.modelfile.params.ParameterError`) for the first problem: a syntax
    error, no FROM, an unknown parameter or a value of the wrong type, a bad REQUIRES.
    Deprecated parameters are kept and reported in ``Modelfile.warnings``.

    ``validate=False`` stops after "no FROM line", like Ollama's ``ParseFile``: PARAMETER
    names/values and REQUIRES are then taken as written (Ollama checks them later, when it
    builds the create request).
    """
    decoded = decode_modelfile_bytes(text) if isinstance(text, bytes) else text
    decoded = decoded.removeprefix("\ufeff")
    src = _Source(decoded, path)
    try:
        tree = _grammar().parse(_mark_nonprintables(decoded))
    except _Problem as problem:
        raise src.error(problem.message, problem.offset) from None
    except LarkError as err:  # the grammar is total; this would be a bug in it
        raise ModelfileError(f"cannot parse Modelfile: {err}", path=path) from None
    assert isinstance(tree, Tree)
    instructions = tuple(
        _instruction(child, src) for child in tree.children if isinstance(child, Tree)
    )
    mf = Modelfile(instructions, path=path)
    if not mf.froms:
        raise ModelfileError(NO_FROM, path=path, line=1, col=1)
    if validate:
        _check(mf, src)
    return Modelfile(instructions, path=path, warnings=_deprecations(mf))


def parse_file(path: str | os.PathLike[str], *, validate: bool = True) -> Modelfile:
    """Read and :func:`parse` a Modelfile; an unreadable file is a ModelfileError too."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ModelfileError(f"cannot read Modelfile: {err.strerror or err}", path=name) from err
    return parse(data, path=name, validate=validate)
