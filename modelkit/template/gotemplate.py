"""Ollama's prompt template: Go ``text/template`` text, parsed once, executed per request.

:class:`GoTemplate` is what Ollama's ``template.Parse`` returns:

- the text is parsed with Go's rules and functions (``json``, ``currentDate``,
  ``yesterdayDate``, ``toTypeScriptType`` on top of Go's built-ins), ``missingkey=zero``;
- :meth:`GoTemplate.vars` is the sorted, lower-cased set of field and variable identifiers the
  template uses; a ``{{template "x"}}`` call without an argument is rejected
  (``undefined template specified``), as Ollama rejects it when a model is created;
- a template that uses neither ``.Messages`` nor ``.Response`` gets a trailing
  ``{{ .Response }}`` (the raw text, :attr:`GoTemplate.raw`, stays as written);
- :meth:`GoTemplate.execute_prefill` runs the template cut after its first ``{{ .Response }}``,
  which is how a trailing assistant message is continued (legacy templates, see ``prompt``).

Parsing: :mod:`.parser` (``grammar/gotemplate.lark``); evaluation: :mod:`.executor`.
"""

from __future__ import annotations

from typing import Any

from modelkit.errors import TemplateError
from modelkit.template.executor import Program, execute
from modelkit.template.functions import BUILTINS
from modelkit.template.nodes import (
    ActionNode,
    BranchNode,
    CommandNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    TemplateNode,
    VariableNode,
)
from modelkit.template.parser import ParsedTemplate, parse, position

__all__ = ["DEFAULT_TEMPLATE_TEXT", "GoTemplate"]

#: The template a model without a TEMPLATE layer gets.
DEFAULT_TEMPLATE_TEXT = "{{ .Prompt }}"


def _response_action(pos: int) -> ActionNode:
    """A ``{{ .Response }}`` action node."""
    field = FieldNode(pos, ("Response",))
    return ActionNode(pos, PipeNode(pos, [], False, [CommandNode(pos, [field])]))


class _Identifiers:
    """Ollama's ``Identifiers`` walk: field and variable names in actions and branches."""

    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name

    def of(self, node: Node | None) -> list[str]:
        if node is None:
            return []
        if isinstance(node, ListNode):
            return [ident for child in node.nodes for ident in self.of(child)]
        if isinstance(node, TemplateNode):
            if node.pipe is None:
                line, col = position(self.source, node.pos)
                raise TemplateError(
                    "undefined template specified", name=self.name, line=line, col=col
                )
            return self.of(node.pipe)
        if isinstance(node, ActionNode):
            return self.of(node.pipe)
        if isinstance(node, BranchNode):
            return self.of(node.pipe) + self.of(node.body) + self.of(node.else_body)
        if isinstance(node, PipeNode):
            return [ident for cmd in node.cmds for arg in cmd.args for ident in self.of(arg)]
        if isinstance(node, FieldNode | VariableNode):
            return list(node.idents)
        return []


class _ResponseCut:
    """Ollama's ``deleteNode``: a copy of the tree without everything after the first
    ``.Response`` field (the action printing it is kept)."""

    def __init__(self) -> None:
        self.cut = False

    def _drop(self, node: Node) -> bool:
        if isinstance(node, FieldNode) and "Response" in node.idents:
            self.cut = True
            return False
        return self.cut

    def walk(self, node: Node) -> Node | None:
        if self._drop(node):
            return None
        if isinstance(node, ListNode):
            return ListNode(node.pos, [c for c in map(self.walk, node.nodes) if c is not None])
        if isinstance(node, BranchNode):
            return self._branch(node)
        if isinstance(node, ActionNode):
            pipe = self.walk(node.pipe)
            return None if pipe is None else ActionNode(node.pos, _as_pipe(pipe))
        if isinstance(node, PipeNode):
            return self._pipe(node)
        return node

    def _list(self, body: ListNode) -> ListNode:
        kept = self.walk(body)
        return kept if isinstance(kept, ListNode) else ListNode(body.pos, [])

    def _branch(self, node: BranchNode) -> BranchNode:
        body = self._list(node.body)
        else_body = None if node.else_body is None else self._list(node.else_body)
        return type(node)(node.pos, node.pipe, body, else_body)

    def _pipe(self, node: PipeNode) -> PipeNode | None:
        cmds = []
        for cmd in node.cmds:
            args = [a for a in map(self.walk, cmd.args) if a is not None]
            if not args:
                return None
            cmds.append(CommandNode(cmd.pos, args))
        return PipeNode(node.pos, node.decl, node.is_assign, cmds)


def _as_pipe(node: Node) -> PipeNode:
    assert isinstance(node, PipeNode)
    return node


class GoTemplate:
    """A parsed Ollama prompt template (Go ``text/template`` with Ollama's functions).

    Raises :class:`~modelkit.errors.TemplateError` for text Ollama would reject.
    """

    def __init__(self, text: str, *, name: str = "") -> None:
        self.raw = text
        self.name = name
        self._parsed: ParsedTemplate = parse(text, name=name, funcs=BUILTINS)
        self._program = Program(name, text, self._parsed.defined, BUILTINS)
        used = self.vars()
        if "messages" not in used and "response" not in used:
            root = self._parsed.root
            root.nodes.append(_response_action(len(text)))

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"GoTemplate({self.raw!r})"

    @property
    def root(self) -> ListNode:
        """The main template's node list (with the appended ``{{ .Response }}`` if any)."""
        return self._parsed.root

    @property
    def defined(self) -> dict[str, ListNode]:
        """Bodies of the ``define``/``block`` templates, by name."""
        return dict(self._parsed.defined)

    def vars(self) -> list[str]:
        """Sorted, lower-cased identifiers used by the template (Ollama's ``Vars()``).

        Variables appear with their ``$`` (``$x``, ``$``); field chains contribute every name.
        """
        walker = _Identifiers(self.raw, self.name)
        found = walker.of(self._parsed.root)
        for body in self._parsed.defined.values():
            found += walker.of(body)
        return sorted({ident.lower() for ident in found})

    def uses(self, identifier: str) -> bool:
        """Whether :meth:`vars` contains ``identifier`` (case-insensitive)."""
        return identifier.lower() in self.vars()

    def execute(self, data: Any) -> str:
        """Render with dot set to ``data`` (usually a dict, which is a Go ``map[string]any``)."""
        return execute(self._program, self._parsed.root, data)

    def execute_prefill(self, data: Any) -> str:
        """Render only up to and including the first ``{{ .Response }}`` (Ollama's legacy
        final turn, so a trailing assistant message is continued rather than closed)."""
        cut = _ResponseCut().walk(self._parsed.root)
        root = cut if isinstance(cut, ListNode) else ListNode(0, [])
        return execute(self._program, root, data)
