"""The typed AST of a Modelfile: one frozen dataclass per instruction, with source positions.

Positions are excluded from equality so that ``parse(format(ast)) == ast`` compares meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

Severity = Literal["error", "warning", "info"]
ParamValue = int | float | bool | list[str]


@dataclass(frozen=True)
class Position:
    """1-based line and column of an instruction's first character."""

    line: int = 0
    col: int = 0


_NOWHERE = Position()


@dataclass(frozen=True)
class Instruction:
    """Base of all instructions; ``command`` is Ollama's lower-case command name.

    ``pos`` is where the instruction word starts; ``value_pos`` where its value starts (the
    opening quote of a quoted value; for PARAMETER/MESSAGE the value after the name/role).
    """

    pos: Position = field(default=_NOWHERE, compare=False, kw_only=True, repr=False)
    value_pos: Position = field(default=_NOWHERE, compare=False, kw_only=True, repr=False)

    command = ""


_I = TypeVar("_I", bound=Instruction)


@dataclass(frozen=True)
class From(Instruction):
    value: str
    command = "from"


@dataclass(frozen=True)
class Parameter(Instruction):
    """``PARAMETER name value``; ``value`` is the raw text, typed by ``params``.

    ``name_pos`` is where the name starts.
    """

    name: str
    value: str
    name_pos: Position = field(default=_NOWHERE, compare=False, kw_only=True, repr=False)
    command = "parameter"


@dataclass(frozen=True)
class Template(Instruction):
    text: str
    command = "template"


@dataclass(frozen=True)
class System(Instruction):
    text: str
    command = "system"


@dataclass(frozen=True)
class Adapter(Instruction):
    path: str
    command = "adapter"


@dataclass(frozen=True)
class License(Instruction):
    text: str
    command = "license"


@dataclass(frozen=True)
class Message(Instruction):
    role: str
    content: str
    command = "message"


@dataclass(frozen=True)
class Requires(Instruction):
    """``REQUIRES 0.14.0`` as written (a leading ``v`` allowed); see ``Modelfile.requires``."""

    version: str
    command = "requires"


@dataclass(frozen=True)
class Draft(Instruction):
    path: str
    command = "draft"


@dataclass(frozen=True)
class Renderer(Instruction):
    name: str
    command = "renderer"


@dataclass(frozen=True)
class Parser(Instruction):
    name: str
    command = "parser"


def instruction_argument(inst: Instruction) -> str:
    """The text argument of an instruction: a FROM's value, a SYSTEM's text, a PARAMETER's raw
    value, a MESSAGE's content, ..."""
    if isinstance(inst, From):
        return inst.value
    if isinstance(inst, Parameter):
        return inst.value
    if isinstance(inst, Template | System | License):
        return inst.text
    if isinstance(inst, Adapter | Draft):
        return inst.path
    if isinstance(inst, Message):
        return inst.content
    if isinstance(inst, Requires):
        return inst.version
    if isinstance(inst, Renderer | Parser):
        return inst.name
    raise TypeError(f"not a Modelfile instruction: {inst!r}")


@dataclass(frozen=True)
class Diagnostic:
    """A message about a Modelfile at a position (lint output, deprecation warnings)."""

    line: int
    col: int
    severity: Severity
    message: str
    rule: str = ""


@dataclass(frozen=True)
class Modelfile:
    """A parsed Modelfile: its instructions in source order plus non-fatal diagnostics."""

    instructions: tuple[Instruction, ...]
    path: str = field(default="<string>", compare=False)
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False)

    def of_type(self, kind: type[_I]) -> list[_I]:
        return [i for i in self.instructions if isinstance(i, kind)]

    @property
    def froms(self) -> list[From]:
        return self.of_type(From)

    @property
    def template(self) -> str | None:
        found = self.of_type(Template)
        return found[-1].text if found else None

    @property
    def system(self) -> str | None:
        found = self.of_type(System)
        return found[-1].text if found else None

    @property
    def adapters(self) -> list[Adapter]:
        return self.of_type(Adapter)

    @property
    def licenses(self) -> list[str]:
        return [i.text for i in self.of_type(License)]

    @property
    def messages(self) -> list[Message]:
        return self.of_type(Message)

    @property
    def drafts(self) -> list[Draft]:
        return self.of_type(Draft)

    @property
    def renderer(self) -> str | None:
        found = self.of_type(Renderer)
        return found[-1].name if found else None

    @property
    def parser(self) -> str | None:
        found = self.of_type(Parser)
        return found[-1].name if found else None

    @property
    def requires(self) -> str | None:
        """The REQUIRES version without its leading ``v`` (Ollama stores it that way)."""
        found = self.of_type(Requires)
        return found[-1].version.removeprefix("v") if found else None
