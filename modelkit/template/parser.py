"""Go template text → :mod:`modelkit.template.nodes` tree, with Go's parse errors.

``grammar/gotemplate.lark`` is run by Lark's LALR parser with an inline transformer
(:class:`_Builder`) that builds the node dataclasses while parsing. A second pass
(:class:`_Checker`) does what Go's parser checks beyond the grammar: variables are declared
before use, functions exist, ``break``/``continue`` sit inside a ``range``, templates are not
defined twice. Every error is a :class:`~modelkit.errors.TemplateError` worded like Go's
(``unclosed action``, ``unexpected EOF``, ``function "x" not defined``, ...) with the line and
column of the offending token.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from modelkit.errors import TemplateError
from modelkit.resources import grammar_text
from modelkit.template.nodes import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)

__all__ = ["ParsedTemplate", "iter_nodes", "parse", "position"]

KEYWORDS = frozenset(
    ["if", "else", "end", "range", "with", "define", "block", "template", "break", "continue"]
)


@dataclass
class ParsedTemplate:
    """A parsed template: the main body and the bodies of ``define``/``block`` templates."""

    name: str
    source: str
    root: ListNode
    defined: dict[str, ListNode] = field(default_factory=dict)


def position(source: str, pos: int) -> tuple[int, int]:
    """``(line, col)`` of offset ``pos``: line 1-based, col the 0-based byte offset (Go's)."""
    pos = max(0, min(pos, len(source)))
    line = source.count("\n", 0, pos) + 1
    start = source.rfind("\n", 0, pos) + 1
    return line, len(source[start:pos].encode("utf-8", "surrogatepass"))


class _SyntaxProblem(Exception):
    """A literal the grammar accepts but Go rejects (bad escape, bad number)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


# ---- literals ----------------------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}


def _escape(body: str, i: int, quote: str, out: bytearray) -> int:
    """Decode the escape starting after the backslash at ``body[i]``; returns the next index."""
    ch = body[i] if i < len(body) else ""
    if ch in _SIMPLE_ESCAPES or ch == quote:
        out += (_SIMPLE_ESCAPES.get(ch) or ch).encode()
        return i + 1
    if ch in _HEX_LENGTHS:
        digits = body[i + 1 : i + 1 + _HEX_LENGTHS[ch]]
        if len(digits) != _HEX_LENGTHS[ch] or any(
            c not in "0123456789abcdefABCDEF" for c in digits
        ):
            raise ValueError("invalid syntax")
        code = int(digits, 16)
        if ch == "x":
            out.append(code)
        elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise ValueError("invalid syntax")
        else:
            out += chr(code).encode()
        return i + 1 + len(digits)
    if ch in "01234567" and ch:
        digits = body[i : i + 3]
        if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
            raise ValueError("invalid syntax")
        out.append(int(digits, 8))
        return i + 3
    raise ValueError("invalid syntax")


def _unquote(text: str) -> str:
    """Go's ``strconv.Unquote`` for "..." and `...` literals (raw strings drop ``\\r``)."""
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    quote, body = text[0], text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i = _escape(body, i + 1, quote, out)
        else:
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "replace")


def _char_value(text: str) -> int:
    value = _unquote(text)
    if len(value) != 1:
        raise ValueError("malformed character constant")
    return ord(value)


def _number_value(text: str) -> int | float | complex:
    """The value of a Go number literal; floats only when written as one (``1.0``, ``1e3``)."""
    t = text.replace("_", "")
    if t.endswith("i"):
        imag = _number_value(t[:-1])
        return complex(0, imag.real if isinstance(imag, complex) else imag)
    body = t.lstrip("+-").lower()
    if body.startswith("0x"):
        return float.fromhex(t) if ("." in body or "p" in body) else int(t, 16)
    if body.startswith(("0b", "0o")):
        return int(t, 0)
    if "." in body or "e" in body:
        return float(t)
    if len(body) > 1 and body.startswith("0"):
        return int(t, 8)
    return int(t)


# ---- tree building -----------------------------------------------------------------------


@dataclass
class _Tail:
    """The end of a control structure: ``{{end}}`` (no else body) or an else body."""

    else_body: ListNode | None


@dataclass
class _Define:
    """A top-level ``{{define "name"}}body{{end}}``."""

    name: str
    body: ListNode
    pos: int


@dataclass
class _Decl:
    """The ``$a, $b :=`` / ``$a =`` head of a pipeline."""

    variables: list[VariableNode]
    is_assign: bool


def _token(children: list[Any], *types: str) -> Token:
    for child in children:
        if isinstance(child, Token) and child.type in types:
            return child
    raise AssertionError(f"no {types} token")  # pragma: no cover - grammar guarantees it


def _items(children: list[Any]) -> ListNode:
    """The body items of a control rule: the nodes after its closing ``}}``."""
    nodes = [c for c in children if isinstance(c, Node) and not isinstance(c, PipeNode)]
    pos = nodes[0].pos if nodes else 0
    return ListNode(pos, nodes)


def _pipe(children: list[Any]) -> PipeNode:
    return next(c for c in children if isinstance(c, PipeNode))


class _Builder(Transformer[Token, Any]):
    """Lark callbacks, one per grammar rule, that build :mod:`nodes` objects."""

    def start(self, children: list[Any]) -> tuple[ListNode, list[_Define]]:
        nodes = [c for c in children if isinstance(c, Node)]
        defines = [c for c in children if isinstance(c, _Define)]
        return ListNode(0, nodes), defines

    def text(self, children: list[Token]) -> TextNode:
        return TextNode(children[0].start_pos or 0, str(children[0]))

    def action(self, children: list[Any]) -> ActionNode:
        pipe = _pipe(children)
        return ActionNode(pipe.pos, pipe)

    def _branch(self, cls: type[BranchNode], children: list[Any], keyword: str) -> BranchNode:
        tok = _token(children, keyword)
        tail = children[-1]
        assert isinstance(tail, _Tail)
        return cls(tok.start_pos or 0, _pipe(children), _items(children[:-1]), tail.else_body)

    def if_block(self, children: list[Any]) -> BranchNode:
        return self._branch(IfNode, children, "IF")

    def with_block(self, children: list[Any]) -> BranchNode:
        return self._branch(WithNode, children, "WITH")

    def range_block(self, children: list[Any]) -> BranchNode:
        return self._branch(RangeNode, children, "RANGE")

    def else_if_tail(self, children: list[Any]) -> _Tail:
        node = self._branch(IfNode, children, "IF")
        return _Tail(ListNode(node.pos, [node]))

    def else_with_tail(self, children: list[Any]) -> _Tail:
        node = self._branch(WithNode, children, "WITH")
        return _Tail(ListNode(node.pos, [node]))

    def else_tail(self, children: list[Any]) -> _Tail:
        body = _items(children[:-1])
        if not body.nodes:
            body.pos = _token(children, "ELSE").start_pos or 0
        return _Tail(body)

    def end_tail(self, children: list[Any]) -> _Tail:
        return _Tail(None)

    def define(self, children: list[Any]) -> _Define:
        name_tok = _token(children, "STRING", "RAW_STRING")
        return _Define(self._string_value(name_tok), _items(children[:-1]), name_tok.start_pos or 0)

    def block_block(self, children: list[Any]) -> TemplateNode:
        name_tok = _token(children, "STRING", "RAW_STRING")
        pos = _token(children, "BLOCK").start_pos or 0
        return TemplateNode(
            pos, self._string_value(name_tok), _pipe(children), _items(children[:-1])
        )

    def template_call(self, children: list[Any]) -> TemplateNode:
        name_tok = _token(children, "STRING", "RAW_STRING")
        pipe = next((c for c in children if isinstance(c, PipeNode)), None)
        pos = _token(children, "TEMPLATE").start_pos or 0
        return TemplateNode(pos, self._string_value(name_tok), pipe)

    def break_action(self, children: list[Any]) -> BreakNode:
        return BreakNode(_token(children, "BREAK").start_pos or 0)

    def continue_action(self, children: list[Any]) -> ContinueNode:
        return ContinueNode(_token(children, "CONTINUE").start_pos or 0)

    @staticmethod
    def _string_value(tok: Token) -> str:
        try:
            return _unquote(str(tok))
        except ValueError as exc:
            raise _SyntaxProblem(str(exc), tok.start_pos or 0) from None

    # -- pipelines --

    def pipeline(self, children: list[Any]) -> PipeNode:
        decl = children[0] if isinstance(children[0], _Decl) else None
        cmds = [c for c in children if isinstance(c, CommandNode)]
        variables = decl.variables if decl else []
        pos = variables[0].pos if variables else cmds[0].pos
        return PipeNode(pos, variables, decl.is_assign if decl else False, cmds)

    def declare(self, children: list[Token]) -> _Decl:
        variables = [
            VariableNode(t.start_pos or 0, (str(t),)) for t in children if t.type == "VARIABLE"
        ]
        return _Decl(variables, children[-1].type == "ASSIGN")

    def command(self, children: list[Node]) -> CommandNode:
        return CommandNode(children[0].pos, list(children))

    def field(self, children: list[Token]) -> FieldNode:
        tok = children[0]
        return FieldNode(tok.start_pos or 0, tuple(str(tok)[1:].split(".")))

    def variable(self, children: list[Token]) -> VariableNode:
        tok = children[0]
        return VariableNode(tok.start_pos or 0, tuple(str(tok).split(".")))

    def dot(self, children: list[Token]) -> DotNode:
        return DotNode(children[0].start_pos or 0)

    def identifier(self, children: list[Token]) -> IdentifierNode:
        return IdentifierNode(children[0].start_pos or 0, str(children[0]))

    def nil(self, children: list[Token]) -> NilNode:
        return NilNode(children[0].start_pos or 0)

    def true(self, children: list[Token]) -> BoolNode:
        return BoolNode(children[0].start_pos or 0, True)

    def false(self, children: list[Token]) -> BoolNode:
        return BoolNode(children[0].start_pos or 0, False)

    def number(self, children: list[Token]) -> NumberNode:
        tok = children[0]
        try:
            return NumberNode(tok.start_pos or 0, str(tok), _number_value(str(tok)))
        except ValueError:
            raise _SyntaxProblem(f'bad number syntax: "{tok}"', tok.start_pos or 0) from None

    def char(self, children: list[Token]) -> NumberNode:
        tok = children[0]
        try:
            return NumberNode(tok.start_pos or 0, str(tok), _char_value(str(tok)))
        except ValueError:
            raise _SyntaxProblem(
                f"malformed character constant: {tok}", tok.start_pos or 0
            ) from None

    def string(self, children: list[Token]) -> StringNode:
        tok = children[0]
        return StringNode(tok.start_pos or 0, str(tok), self._string_value(tok))

    def paren(self, children: list[Any]) -> PipeNode:
        return _pipe(children)

    def chain(self, children: list[Any]) -> ChainNode:
        lpar = _token(children, "LPAR")
        fields = tuple(str(children[-1])[2:].split("."))
        return ChainNode(lpar.start_pos or 0, _pipe(children), fields)


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_text("gotemplate.lark"),
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        maybe_placeholders=False,
    )


# ---- Lark errors → Go's messages ---------------------------------------------------------

_MISSING_VALUE_AFTER = {
    "IF": "if",
    "RANGE": "range",
    "WITH": "with",
    "OPEN": "command",
    "OPEN_TRIM": "command",
    "DECLARE": "command",
    "ASSIGN": "command",
    "_PIPE": "command",
    "LPAR": "command",
}


def _describe(tok: Token) -> str:
    value = str(tok)
    if tok.type in {k.upper() for k in KEYWORDS}:
        return f"<{value}>"
    return '"' + value.strip() + '"'


def _unexpected_token(exc: UnexpectedToken, source: str) -> tuple[str, int]:
    tok = exc.token
    pos = tok.start_pos if tok.start_pos is not None else len(source)
    expected = set(exc.expected or ())
    if tok.type == "$END":
        if expected & {"CLOSE", "CLOSE_TRIM"}:
            return "unclosed action", max(source.rfind("{{"), 0)
        return "unexpected EOF", len(source)
    if tok.type in ("END", "ELSE"):
        return f"unexpected {{{{{tok}}}}}", pos
    history = list(getattr(exc, "token_history", None) or [])
    previous = history[-1].type if history else ""
    at_close = tok.type in ("CLOSE", "CLOSE_TRIM") or str(tok).lstrip().startswith(("}}", "-}}"))
    if at_close and previous in _MISSING_VALUE_AFTER:
        return f"missing value for {_MISSING_VALUE_AFTER[previous]}", pos
    if tok.type in ("TEXT", "OPEN", "OPEN_TRIM"):
        # Only the root lexer matches text-side terminals inside an action: a character
        # that starts no action token.
        return _bad_action_char(source, pos)
    return f"unexpected {_describe(tok)} in command", pos


def _bad_action_char(source: str, pos: int) -> tuple[str, int]:
    """Go's lexer message for the character at ``pos`` inside an action."""
    rest = source[pos:]
    before = source[:pos].rstrip(" \t\r\n-")
    if rest.startswith("/*") and before.endswith("{{"):
        if "*/" in rest:
            return "comment ends before closing delimiter", pos
        return "unclosed comment", pos
    quotes = {'"': "unterminated quoted string", "`": "unterminated raw quoted string"}
    if rest[:1] in quotes:
        return quotes[rest[:1]], pos
    if rest[:1] == "'":
        return "unterminated character constant", pos
    ch = rest[:1]
    return f"unrecognized character in action: U+{ord(ch):04X} {ch!r}", pos


def _unexpected_chars(exc: UnexpectedCharacters, source: str) -> tuple[str, int]:
    return _bad_action_char(source, exc.pos_in_stream or 0)


def _syntax_error(exc: UnexpectedInput, source: str, name: str) -> TemplateError:
    if isinstance(exc, UnexpectedToken):
        message, pos = _unexpected_token(exc, source)
    elif isinstance(exc, UnexpectedCharacters):
        message, pos = _unexpected_chars(exc, source)
    else:  # pragma: no cover - UnexpectedEOF is not raised by the LALR parser
        message, pos = "unexpected EOF", len(source)
    line, col = position(source, pos)
    return TemplateError(message, name=name, line=line, col=col)


# ---- semantic checks ---------------------------------------------------------------------


def _is_empty(body: ListNode) -> bool:
    """Go's ``IsEmptyTree``: nothing but white space."""
    return all(isinstance(n, TextNode) and not n.text.strip() for n in body.nodes)


class _Checker:
    """Go's parse-time checks on a built tree; raises :class:`TemplateError`."""

    def __init__(self, source: str, name: str, funcs: Collection[str]) -> None:
        self.source = source
        self.name = name
        self.funcs = funcs
        self.vars: list[str] = ["$"]

    def error(self, message: str, node: Node) -> TemplateError:
        line, col = position(self.source, node.pos)
        return TemplateError(message, name=self.name, line=line, col=col)

    def check_body(self, body: ListNode) -> None:
        self.vars = ["$"]
        self.check_list(body, in_range=False)

    def check_list(self, body: ListNode, *, in_range: bool) -> None:
        for node in body.nodes:
            self.check_node(node, in_range=in_range)

    def check_node(self, node: Node, *, in_range: bool) -> None:
        if isinstance(node, ActionNode):
            self.check_pipe(node.pipe, "command")
        elif isinstance(node, BranchNode):
            self.check_branch(node, in_range=in_range)
        elif isinstance(node, TemplateNode):
            if node.pipe is not None:
                self.check_pipe(node.pipe, "template")
        elif isinstance(node, BreakNode | ContinueNode) and not in_range:
            raise self.error(f"{node} outside {{{{range}}}}", node)

    def check_branch(self, node: BranchNode, *, in_range: bool) -> None:
        mark = len(self.vars)
        self.check_pipe(node.pipe, node.keyword)
        self.check_list(node.body, in_range=in_range or isinstance(node, RangeNode))
        if node.else_body is not None:
            self.check_list(node.else_body, in_range=in_range)
        del self.vars[mark:]

    def check_pipe(self, pipe: PipeNode, context: str) -> None:
        if len(pipe.decl) > 1 and context != "range":
            raise self.error(f"too many declarations in {context}", pipe)
        for var in pipe.decl:
            if pipe.is_assign:
                self.check_variable(var)
            else:
                self.vars.append(var.idents[0])
        for i, cmd in enumerate(pipe.cmds):
            if i > 0 and isinstance(
                cmd.args[0], BoolNode | DotNode | NilNode | NumberNode | StringNode
            ):
                raise self.error(f"non executable command in pipeline stage {i + 1}", cmd)
            for arg in cmd.args:
                self.check_arg(arg)

    def check_variable(self, var: VariableNode) -> None:
        if var.idents[0] not in self.vars:
            raise self.error(f'undefined variable "{var.idents[0]}"', var)

    def check_arg(self, arg: Node) -> None:
        if isinstance(arg, VariableNode):
            self.check_variable(arg)
        elif isinstance(arg, IdentifierNode):
            if arg.name in KEYWORDS:
                raise self.error(f"unexpected <{arg.name}> in command", arg)
            if arg.name not in self.funcs:
                raise self.error(f'function "{arg.name}" not defined', arg)
        elif isinstance(arg, PipeNode):
            self.check_pipe(arg, "parenthesized pipeline")
        elif isinstance(arg, ChainNode):
            self.check_pipe(arg.node, "parenthesized pipeline")


def iter_nodes(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, depth first, in source order."""
    yield node
    children: list[Node] = []
    if isinstance(node, ListNode):
        children = list(node.nodes)
    elif isinstance(node, ActionNode):
        children = [node.pipe]
    elif isinstance(node, BranchNode):
        children = [node.pipe, node.body] + ([node.else_body] if node.else_body else [])
    elif isinstance(node, TemplateNode):
        children = ([node.pipe] if node.pipe else []) + (
            [node.block_body] if node.block_body else []
        )
    elif isinstance(node, PipeNode):
        children = [*node.decl, *node.cmds]
    elif isinstance(node, CommandNode):
        children = list(node.args)
    elif isinstance(node, ChainNode):
        children = [node.node]
    for child in children:
        yield from iter_nodes(child)


def _collect_definitions(
    root: ListNode, defines: list[_Define], checker: _Checker
) -> dict[str, ListNode]:
    """Template bodies by name, from ``define`` and ``block``; Go's redefinition rule."""
    found: list[tuple[str, ListNode, Node]] = [(d.name, d.body, d.body) for d in defines]
    for body in [root, *(d.body for d in defines)]:
        for node in iter_nodes(body):
            if isinstance(node, TemplateNode) and node.block_body is not None:
                found.append((node.name, node.block_body, node))
    defined: dict[str, ListNode] = {}
    for name, body, where in sorted(found, key=lambda item: item[2].pos):
        existing = defined.get(name)
        if existing is not None and not _is_empty(existing) and not _is_empty(body):
            raise checker.error(f'template: multiple definition of template "{name}"', where)
        if existing is None or _is_empty(existing):
            defined[name] = body
    return defined


def parse(source: str, *, name: str = "", funcs: Collection[str] = ()) -> ParsedTemplate:
    """Parse Go template text; ``funcs`` are the function names calls may use.

    Raises :class:`TemplateError` with Go's wording and the position of the problem.
    """
    try:
        built = _lark().parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, source, name) from None
    except _SyntaxProblem as exc:
        line, col = position(source, exc.pos)
        raise TemplateError(exc.message, name=name, line=line, col=col) from None
    # The inline transformer makes parse() return what _Builder.start built.
    root, defines = cast(tuple[ListNode, list[_Define]], built)
    checker = _Checker(source, name, funcs)
    checker.check_body(root)
    for define in defines:
        checker.check_body(define.body)
    defined = _collect_definitions(root, defines, checker)
    return ParsedTemplate(name, source, root, defined)
