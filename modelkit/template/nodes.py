"""The parse tree of a Go template: one dataclass per node kind of Go's ``text/template/parse``.

Every node carries ``pos``, its offset in the template source, so errors can name a line and
column. ``str(node)`` gives the node back as template text in Go's canonical form (``.A.B``,
``index .X 1``, ``{{if .X}}...``), which execution errors quote as ``at <...>`` like Go does.

``else if`` / ``else with`` are, as in Go, an :class:`IfNode` / :class:`WithNode` that is the
only node of the enclosing branch's ``else_body``; ``{{block}}`` is turned into a definition plus
a :class:`TemplateNode` by the parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ActionNode",
    "BoolNode",
    "BranchNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "VariableNode",
    "WithNode",
]


@dataclass(eq=False)
class Node:
    """Base of all nodes; ``pos`` is the 0-based offset of the node in the source text."""

    pos: int


@dataclass(eq=False)
class TextNode(Node):
    """Plain text between actions (already trimmed by ``{{-``/``-}}`` markers)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class ListNode(Node):
    """A sequence of nodes: a template body or one branch of a control structure."""

    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


# ---- operands ----------------------------------------------------------------------------


@dataclass(eq=False)
class FieldNode(Node):
    """``.A.B``: a chain of field names looked up on dot."""

    idents: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass(eq=False)
class VariableNode(Node):
    """``$x`` or ``$x.A.B``: ``idents[0]`` is the variable name (with ``$``), then fields."""

    idents: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(eq=False)
class DotNode(Node):
    """``.``: the current value of dot."""

    def __str__(self) -> str:
        return "."


@dataclass(eq=False)
class NilNode(Node):
    """The untyped ``nil`` constant."""

    def __str__(self) -> str:
        return "nil"


@dataclass(eq=False)
class BoolNode(Node):
    """``true`` or ``false``."""

    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(eq=False)
class NumberNode(Node):
    """A number constant; ``value`` is an ``int`` (ints, chars) or a ``float``/``complex``."""

    text: str
    value: int | float | complex

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class StringNode(Node):
    """A string constant: ``quoted`` is the source form, ``text`` the unquoted value."""

    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(eq=False)
class IdentifierNode(Node):
    """A function name (``printf``, ``json``, ...)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(eq=False)
class ChainNode(Node):
    """``(pipeline).A.B``: fields looked up on the result of a parenthesized pipeline."""

    node: PipeNode
    fields: tuple[str, ...]

    def __str__(self) -> str:
        return f"({self.node})" + "".join("." + f for f in self.fields)


# ---- pipelines ---------------------------------------------------------------------------


@dataclass(eq=False)
class CommandNode(Node):
    """One command of a pipeline: an operand, or a function/method and its arguments."""

    args: list[Node]

    def __str__(self) -> str:
        parts = []
        for arg in self.args:
            text = str(arg)
            parts.append(f"({text})" if isinstance(arg, PipeNode) else text)
        return " ".join(parts)


@dataclass(eq=False)
class PipeNode(Node):
    """``$x := cmd | cmd``: optional declared (``:=``) or assigned (``=``) variables."""

    decl: list[VariableNode]
    is_assign: bool
    cmds: list[CommandNode]

    def __str__(self) -> str:
        head = ""
        if self.decl:
            names = ", ".join(str(v) for v in self.decl)
            head = f"{names} {'=' if self.is_assign else ':='} "
        return head + " | ".join(str(c) for c in self.cmds)


# ---- actions and control structures ------------------------------------------------------


@dataclass(eq=False)
class ActionNode(Node):
    """``{{pipeline}}``: evaluated, and printed unless it declares/assigns variables."""

    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(eq=False)
class BranchNode(Node):
    """Common shape of ``if``, ``range`` and ``with``."""

    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None

    keyword = "branch"

    def __str__(self) -> str:
        text = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.body)
        if self.else_body is not None:
            text += "{{else}}" + str(self.else_body)
        return text + "{{end}}"


@dataclass(eq=False)
class IfNode(BranchNode):
    """``{{if pipeline}} ... {{else}} ... {{end}}``."""

    keyword = "if"


@dataclass(eq=False)
class WithNode(BranchNode):
    """``{{with pipeline}} ... {{else}} ... {{end}}``: dot is set to the value when truthy."""

    keyword = "with"


@dataclass(eq=False)
class RangeNode(BranchNode):
    """``{{range pipeline}} ... {{else}} ... {{end}}``."""

    keyword = "range"


@dataclass(eq=False)
class TemplateNode(Node):
    """``{{template "name" pipeline}}``; ``pipe`` is ``None`` when no argument is given.

    A ``{{block "name" pipeline}}body{{end}}`` is this node with ``block_body`` set: the parser
    also registers the body as the definition of ``name``.
    """

    name: str
    pipe: PipeNode | None
    block_body: ListNode | None = None

    def __str__(self) -> str:
        arg = "" if self.pipe is None else " " + str(self.pipe)
        return "{{template " + _go_quote(self.name) + arg + "}}"


@dataclass(eq=False)
class BreakNode(Node):
    """``{{break}}`` inside a range."""

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(eq=False)
class ContinueNode(Node):
    """``{{continue}}`` inside a range."""

    def __str__(self) -> str:
        return "{{continue}}"


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
