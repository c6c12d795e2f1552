"""Executes a parsed Go template against Python data, with Go ``text/template`` semantics.

The walk mirrors Go's ``exec.go``: pipelines feed each command's result to the next as its
last argument; variables live on a stack that control structures pop when they end; ``range``
covers lists, maps (sorted keys) and integers (Go 1.22); ``if``/``with`` use Go truth;
``{{template}}`` runs a definition with a fresh variable stack. Map fields follow Ollama's
``missingkey=zero`` (a missing key is nil and prints ``<no value>``), while a
:class:`~modelkit.template.values.GoStruct` without the field is an error, as for a Go struct.

Errors are :class:`~modelkit.errors.TemplateError` worded as Go's:
``template: :1:3: executing "" at <.Foo>: can't evaluate field Foo in type Message``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from modelkit.errors import TemplateError
from modelkit.template.functions import FuncError, GoFunc
from modelkit.template.gofmt import format_value
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
)
from modelkit.template.parser import position
from modelkit.template.values import (
    MISSING,
    GoStruct,
    go_type_name,
    is_true,
    kind,
    sorted_items,
)

__all__ = ["MAX_TEMPLATE_DEPTH", "Program", "execute"]

#: How deep ``{{template}}`` calls may nest (Go allows 100000; Python's stack is smaller).
MAX_TEMPLATE_DEPTH = 100


@dataclass(frozen=True)
class Program:
    """What execution needs: the source (for positions), definitions and functions."""

    name: str
    source: str
    defined: Mapping[str, ListNode]
    funcs: Mapping[str, GoFunc]


class _Break(Exception):
    """``{{break}}`` unwinding to its ``range``."""


class _Continue(Exception):
    """``{{continue}}`` unwinding to its ``range``."""


@dataclass
class _State:
    """One template invocation: output, the variable stack, where we are, how deep."""

    program: Program
    out: list[str]
    vars: list[tuple[str, Any]]
    depth: int = 0
    node: Node | None = field(default=None)

    # -- errors and variables --

    def at(self, node: Node) -> None:
        self.node = node

    def error(self, message: str) -> NoReturn:
        node = self.node
        if node is None:
            raise TemplateError(message, name=self.program.name)
        line, col = position(self.program.source, node.pos)
        context = f'executing "{self.program.name}" at <{_context(node)}>: '
        raise TemplateError(context + message, name=self.program.name, line=line, col=col)

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def push(self, name: str, value: Any) -> None:
        self.vars.append((name, value))

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        self.error(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        name = self.vars[-n][0]
        self.vars[-n] = (name, value)

    def var_value(self, name: str) -> Any:
        for var_name, value in reversed(self.vars):
            if var_name == name:
                return value
        self.error(f"undefined variable: {name}")

    # -- walking the tree --

    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, BranchNode):
            self.walk_if_or_with(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        else:  # pragma: no cover - the parser makes no other statement nodes
            self.error(f"unknown node: {node}")

    def print_value(self, node: Node, value: Any) -> None:
        self.at(node)
        if value is None or value is MISSING:
            self.out.append("<no value>")
            return
        if kind(value) == "func":
            self.error(f"can't print {node} of type {go_type_name(value)}")
        self.out.append(format_value(value))

    def walk_if_or_with(self, dot: Any, node: BranchNode) -> None:
        mark = self.mark()
        value = self.eval_pipeline(dot, node.pipe)
        if is_true(value):
            self.walk(dot if isinstance(node, IfNode) else value, node.body)
        elif node.else_body is not None:
            self.walk(dot, node.else_body)
        self.pop(mark)

    def walk_range(self, dot: Any, node: RangeNode) -> None:
        self.at(node)
        outer = self.mark()
        value = self.eval_pipeline(dot, node.pipe)
        items = self.range_items(node, value)
        mark = self.mark()
        ran = False
        for index, elem in items:
            ran = True
            if self.range_iteration(node, index, elem, mark):
                break
        if not ran and node.else_body is not None:
            self.walk(dot, node.else_body)
        self.pop(outer)

    def range_items(self, node: RangeNode, value: Any) -> Sequence[tuple[Any, Any]]:
        """``(index or key, element)`` pairs to range over, in Go's order."""
        if value is None:
            return []
        if isinstance(value, Mapping):
            return sorted_items(value)
        if isinstance(value, list | tuple | bytes | bytearray):
            return list(enumerate(value))
        if isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                self.at(node)
                self.error(f"can't use {value} to iterate over more than one variable")
            return [(i, i) for i in range(value)]
        self.at(node)
        self.error(f"range can't iterate over {format_value(value)}")

    def range_iteration(self, node: RangeNode, index: Any, elem: Any, mark: int) -> bool:
        """Run the body once; ``True`` when ``{{break}}`` ended the loop."""
        decl = node.pipe.decl
        if decl:
            if node.pipe.is_assign:
                if len(decl) > 1:
                    self.set_var(decl[0].idents[0], index)
                    self.set_var(decl[1].idents[0], elem)
                else:
                    self.set_var(decl[0].idents[0], elem)
            else:
                self.set_top_var(1, elem)
                if len(decl) > 1:
                    self.set_top_var(2, index)
        try:
            self.walk(elem, node.body)
        except _Break:
            return True
        except _Continue:
            pass
        finally:
            self.pop(mark)
        return False

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        self.at(node)
        body = self.program.defined.get(node.name)
        if body is None:
            self.error(f'no such template "{node.name}"')
        if self.depth >= MAX_TEMPLATE_DEPTH:
            self.error(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
        new_dot = None if node.pipe is None else self.eval_pipeline(dot, node.pipe)
        state = _State(self.program, self.out, [("$", new_dot)], self.depth + 1)
        state.walk(new_dot, body)

    # -- pipelines and commands --

    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.at(pipe)
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.push(var.idents[0], value)
        return value

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, PipeNode):
            return self.eval_pipeline(dot, first)
        if isinstance(first, NilNode):
            self.error("nil is not a command")
        return self.eval_constant(dot, first)

    def not_a_function(self, args: Sequence[Node], final: Any) -> None:
        if len(args) > 1 or final is not MISSING:
            self.error(f"can't give argument to non-function {args[0]}")

    def eval_constant(self, dot: Any, node: Node) -> Any:
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, NumberNode):
            return node.value
        if isinstance(node, StringNode):
            return node.text
        if isinstance(node, NilNode):
            return None
        self.error(f"can't evaluate command {node}")  # pragma: no cover

    def eval_arg(self, dot: Any, node: Node) -> Any:
        """An argument of a function or method call."""
        self.at(node)
        if isinstance(node, FieldNode):
            return self.eval_field_chain(dot, dot, node, node.idents, [node], MISSING)
        if isinstance(node, VariableNode):
            return self.eval_variable(dot, node, [node], MISSING)
        if isinstance(node, PipeNode):
            return self.eval_pipeline(dot, node)
        if isinstance(node, IdentifierNode):
            return self.eval_function(dot, node, node, [node], MISSING)
        if isinstance(node, ChainNode):
            return self.eval_chain(dot, node, [node], MISSING)
        return self.eval_constant(dot, node)

    def call_args(self, dot: Any, args: Sequence[Node], final: Any) -> list[Any]:
        values = [self.eval_arg(dot, arg) for arg in args[1:]]
        if final is not MISSING:
            values.append(final)
        return values

    def eval_function(
        self, dot: Any, node: IdentifierNode, cmd: Node, args: Sequence[Node], final: Any
    ) -> Any:
        """Call the function ``node`` names; errors it returns are reported at ``cmd``."""
        self.at(node)
        func = self.program.funcs.get(node.name)
        if func is None:
            self.error(f'"{node.name}" is not a defined function')
        count = len(args) - 1 + (final is not MISSING)
        problem = func.check_arity(count)
        if problem is not None:
            self.error(problem)
        if func.nil_type is not None:
            for arg in args[1:]:
                if isinstance(arg, NilNode):
                    self.at(arg)
                    self.error(f"cannot assign nil to {func.nil_type}")
        values: list[Any]
        if func.lazy:
            values = [self.thunk(dot, arg) for arg in args[1:]]
            if final is not MISSING:
                values.append(lambda: final)
        else:
            values = self.call_args(dot, args, final)
        self.at(cmd)
        return self.call(node.name, func.fn, values)

    def thunk(self, dot: Any, arg: Node) -> Callable[[], Any]:
        return lambda: self.eval_arg(dot, arg)

    def call(self, name: str, fn: Callable[..., Any], values: list[Any]) -> Any:
        node = self.node
        try:
            return fn(*values)
        except FuncError as exc:
            self.node = node
            self.error(f"error calling {name}: {exc}")

    def eval_variable(self, dot: Any, node: VariableNode, args: Sequence[Node], final: Any) -> Any:
        self.at(node)
        value = self.var_value(node.idents[0])
        if len(node.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, node, node.idents[1:], args, final)

    def eval_chain(self, dot: Any, node: ChainNode, args: Sequence[Node], final: Any) -> Any:
        self.at(node)
        value = self.eval_pipeline(dot, node.node)
        return self.eval_field_chain(dot, value, node, node.fields, args, final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: Node,
        idents: Sequence[str],
        args: Sequence[Node],
        final: Any,
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.eval_field(dot, ident, node, [node], MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(
        self, dot: Any, name: str, node: Node, args: Sequence[Node], final: Any, receiver: Any
    ) -> Any:
        """``receiver.name``: a map key, a struct field, or a method called with ``args``."""
        self.at(node)
        has_args = len(args) > 1 or final is not MISSING
        if receiver is None:
            self.error(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Mapping):
            if has_args:
                self.error(f"{name} is not a method but has arguments")
            return receiver.get(name)
        if isinstance(receiver, GoStruct):
            try:
                value = receiver.go_field(name)
            except KeyError:
                self.error(f"can't evaluate field {name} in type {receiver.go_type_name()}")
            if not has_args:
                return value
            if callable(value):
                return self.call(name, value, self.call_args(dot, args, final))
            self.error(f"{name} has arguments but cannot be invoked as function")
        self.error(f"can't evaluate field {name} in type {go_type_name(receiver)}")


def _context(node: Node) -> str:
    """What Go quotes in ``at <...>``: the node's text, shortened like Go's ErrorContext."""
    text = str(node)
    if len(text) > 20:
        text = text[:20] + "..."
    return text


def execute(program: Program, root: ListNode, data: Any) -> str:
    """Run ``root`` with dot (and ``$``) set to ``data``; returns the output text."""
    out: list[str] = []
    state = _State(program, out, [("$", data)])
    try:
        state.walk(data, root)
    except (_Break, _Continue):  # pragma: no cover - the parser confines them to ranges
        state.error("break or continue outside range")
    except RecursionError:
        state.error("exceeded maximum template depth")
    return "".join(out)
