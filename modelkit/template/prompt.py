"""Prompt assembly with a Go template, as Ollama's ``Template.Execute`` does it.

The chat data types are dataclasses that templates see under Ollama's Go field names:

==========================  ==============================================================
Python                      in a template
==========================  ==============================================================
:class:`Message`            ``.Role .Content .Thinking .Images .ToolCalls .ToolName
                            .ToolCallID``
:class:`ToolCall`           ``.ID .Function`` (``.Function.Index .Function.Name
                            .Function.Arguments``: a map that ranges by sorted key and
                            prints as JSON; JSON numbers are float64, as in Go)
:class:`Tool`               ``.Type .Items .Function`` (``.Function.Name .Description
                            .Parameters``); a tool, its function and the ``.Tools`` list
                            print as JSON
:class:`ToolFunctionParameters`  ``.Type .Defs .Items .Required .Properties`` (a map of
                            :class:`ToolProperty`, sorted, printing as JSON)
:class:`ToolProperty`       ``.Type`` (prints ``string`` or ``[string null]``) ``.Description
                            .Enum .Items .AnyOf .Properties .Required``
==========================  ==============================================================

:func:`render_prompt` picks the mode (Ollama's reference §7.3):

1. ``prompt`` and ``suffix`` both given → *suffix* mode (fill-in-the-middle), one execution
   with ``.Prompt .Suffix .Response(="")`` and the think values;
2. the template uses ``.Messages`` → *messages* mode, one execution with ``.System`` (all
   system contents joined by a blank line), ``.Messages`` (collated), ``.Tools``,
   ``.Response(="")``, ``.Think .ThinkLevel .IsThinkSet``;
3. otherwise *legacy* mode: the collated messages are walked with system/prompt/response slots,
   rendering the whole template each time a turn completes, and finally the template cut after
   its first ``{{ .Response }}`` so a trailing assistant message is continued (prefill).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelkit.template.gotemplate import GoTemplate
from modelkit.template.values import GoStruct, JSONList, JSONMap, go_json, json_tree

__all__ = [
    "THINK_LEVELS",
    "Message",
    "PropertyType",
    "Tool",
    "ToolCall",
    "ToolCallFunction",
    "ToolFunction",
    "ToolFunctionParameters",
    "ToolProperty",
    "collate",
    "render_prompt",
    "think_values",
]

#: The string values ``think`` may take.
THINK_LEVELS = ("low", "medium", "high", "max")


def _omit_empty(pairs: Iterable[tuple[str, Any]], keep: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object of ``pairs`` without empty values (Go's ``omitempty``), except ``keep``."""
    always = set(keep)
    return {k: v for k, v in pairs if k in always or v not in (None, "", [], {})}


def _go_numbers(value: Any) -> Any:
    """JSON-decoded data as Go holds it in ``any``: every number a float64."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_go_numbers(v) for v in value]
    return value


# ---- tool calls --------------------------------------------------------------------------


@dataclass
class ToolCallFunction(GoStruct):
    """The function part of a tool call: ``.Index .Name .Arguments``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    GO_FIELDS = (("Index", "index"), ("Name", "name"), ("Arguments", "arguments"))
    GO_TYPE = "template.templateToolCallFunction"

    def go_field(self, name: str) -> Any:
        if name == "Arguments":
            return JSONMap(_go_numbers(self.arguments))
        return super().go_field(name)


@dataclass
class ToolCall(GoStruct):
    """A tool call made by the assistant: ``.ID .Function``."""

    function: ToolCallFunction
    id: str = ""

    GO_FIELDS = (("ID", "id"), ("Function", "function"))
    GO_TYPE = "template.templateToolCall"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """From Ollama's API JSON ``{"id", "function": {"index", "name", "arguments"}}``."""
        fn = data.get("function") or {}
        function = ToolCallFunction(
            name=str(fn.get("name", "")),
            arguments=dict(fn.get("arguments") or {}),
            index=int(fn.get("index") or 0),
        )
        return cls(function=function, id=str(data.get("id") or ""))


# ---- messages ----------------------------------------------------------------------------


@dataclass
class Message(GoStruct):
    """One chat message (``.Role .Content .Thinking .Images .ToolCalls .ToolName .ToolCallID``)."""

    role: str
    content: str = ""
    thinking: str = ""
    images: list[bytes] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_name: str = ""
    tool_call_id: str = ""

    GO_FIELDS = (
        ("Role", "role"),
        ("Content", "content"),
        ("Thinking", "thinking"),
        ("Images", "images"),
        ("ToolCalls", "tool_calls"),
        ("ToolName", "tool_name"),
        ("ToolCallID", "tool_call_id"),
    )
    GO_TYPE = "*template.templateMessage"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """From Ollama's API JSON (images as base64 strings or bytes)."""
        images = [
            img if isinstance(img, bytes) else base64.b64decode(img)
            for img in data.get("images") or []
        ]
        return cls(
            role=str(data.get("role", "")),
            content=str(data.get("content") or ""),
            thinking=str(data.get("thinking") or ""),
            images=images,
            tool_calls=[ToolCall.from_dict(tc) for tc in data.get("tool_calls") or []],
            tool_name=str(data.get("tool_name") or ""),
            tool_call_id=str(data.get("tool_call_id") or ""),
        )


# ---- tools -------------------------------------------------------------------------------


class PropertyType(list[str]):
    """A property's JSON-schema ``type``: one name or several (Ollama's ``PropertyType``).

    Prints as the name (``string``) or as a Go list (``[string null]``); JSON is a string or
    an array accordingly.
    """

    def go_string(self) -> str:
        if not self:
            return ""
        return self[0] if len(self) == 1 else "[" + " ".join(self) + "]"

    def go_json(self) -> Any:
        return self[0] if len(self) == 1 else list(self)


def _typescript(json_type: str) -> str:
    return {
        "string": "string",
        "number": "number",
        "integer": "number",
        "boolean": "boolean",
        "array": "any[]",
        "object": "Record<string, any>",
        "null": "null",
    }.get(json_type, "any")


@dataclass
class ToolProperty(GoStruct):
    """One parameter of a tool (a JSON-schema fragment)."""

    type: PropertyType = field(default_factory=PropertyType)
    description: str = ""
    enum: list[Any] = field(default_factory=list)
    items: Any = None
    any_of: list[ToolProperty] = field(default_factory=list)
    properties: dict[str, ToolProperty] | None = None
    required: list[str] = field(default_factory=list)

    GO_FIELDS = (
        ("AnyOf", "any_of"),
        ("Type", "type"),
        ("Items", "items"),
        ("Description", "description"),
        ("Enum", "enum"),
        ("Properties", "properties"),
        ("Required", "required"),
    )
    GO_TYPE = "api.ToolProperty"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolProperty:
        """From a JSON-schema property object (``type`` a string or a list)."""
        raw_type = data.get("type")
        types = [raw_type] if isinstance(raw_type, str) else list(raw_type or [])
        props = data.get("properties")
        return cls(
            type=PropertyType(types),
            description=str(data.get("description") or ""),
            enum=list(data.get("enum") or []),
            items=data.get("items"),
            any_of=[cls.from_dict(p) for p in data.get("anyOf") or []],
            properties=None if props is None else {k: cls.from_dict(v) for k, v in props.items()},
            required=list(data.get("required") or []),
        )

    def go_field(self, name: str) -> Any:
        if name == "Properties":
            return JSONMap(self.properties or {})
        return super().go_field(name)

    def go_json(self) -> Any:
        """Ollama's JSON: every field ``omitempty``; nested properties in given order."""
        nested = None
        if self.properties is not None:
            nested = {k: v.go_json() for k, v in self.properties.items()}
        pairs = [
            ("anyOf", [p.go_json() for p in self.any_of]),
            ("type", self.type.go_json() if self.type else None),
            ("items", json_tree(self.items)),
            ("description", self.description),
            ("enum", json_tree(self.enum)),
            ("properties", nested),
            ("required", list(self.required)),
        ]
        result = _omit_empty(pairs)
        if nested == {}:
            result["properties"] = {}
        return result

    def to_typescript_type(self) -> str:
        """The TypeScript type (``toTypeScriptType``): anyOf joined by `` | ``, else the
        type(s) mapped (``integer`` → ``number``, ``array`` → ``any[]``...), else ``any``."""
        if self.any_of:
            return " | ".join(p.to_typescript_type() for p in self.any_of)
        if not self.type:
            return "any"
        return " | ".join(_typescript(t) for t in self.type)


@dataclass
class ToolFunctionParameters(GoStruct):
    """A tool's parameter schema: ``.Type .Defs .Items .Required .Properties``."""

    type: str = "object"
    properties: dict[str, ToolProperty] | None = None
    required: list[str] = field(default_factory=list)
    defs: Any = None
    items: Any = None

    GO_FIELDS = (
        ("Type", "type"),
        ("Defs", "defs"),
        ("Items", "items"),
        ("Required", "required"),
        ("Properties", "properties"),
    )
    GO_TYPE = "template.templateToolFunctionParameters"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolFunctionParameters:
        props = data.get("properties")
        return cls(
            type=str(data.get("type") or ""),
            properties=None
            if props is None
            else {k: ToolProperty.from_dict(v) for k, v in props.items()},
            required=list(data.get("required") or []),
            defs=data.get("$defs"),
            items=data.get("items"),
        )

    def go_field(self, name: str) -> Any:
        if name == "Properties":
            return JSONMap(self.properties or {})
        return super().go_field(name)

    def go_json(self) -> Any:
        props = None if self.properties is None else json_tree(self.properties)
        pairs = [
            ("type", self.type),
            ("$defs", json_tree(self.defs)),
            ("items", json_tree(self.items)),
            ("required", list(self.required)),
            ("properties", props),
        ]
        return _omit_empty(pairs, keep=("type", "properties"))


@dataclass
class ToolFunction(GoStruct):
    """A tool's function: ``.Name .Description .Parameters``."""

    name: str
    description: str = ""
    parameters: ToolFunctionParameters = field(default_factory=ToolFunctionParameters)

    GO_FIELDS = (("Name", "name"), ("Description", "description"), ("Parameters", "parameters"))
    GO_TYPE = "template.templateToolFunction"

    def go_json(self) -> Any:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters.go_json(),
        }

    def go_string(self) -> str:
        """A tool function prints as its JSON (templates write ``"function": {{ .Function }}``)."""
        return go_json(self, on_error="")


@dataclass
class Tool(GoStruct):
    """A tool the model may call (``{"type": "function", "function": {...}}``)."""

    function: ToolFunction
    type: str = "function"
    items: Any = None

    GO_FIELDS = (("Type", "type"), ("Items", "items"), ("Function", "function"))
    GO_TYPE = "template.templateTool"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tool:
        """From Ollama's / OpenAI's API JSON tool object."""
        fn = data.get("function") or {}
        function = ToolFunction(
            name=str(fn.get("name", "")),
            description=str(fn.get("description") or ""),
            parameters=ToolFunctionParameters.from_dict(fn.get("parameters") or {}),
        )
        return cls(function=function, type=str(data.get("type") or ""), items=data.get("items"))

    def go_json(self) -> Any:
        pairs = [("type", self.type), ("items", json_tree(self.items))]
        return {**_omit_empty(pairs, keep=("type",)), "function": self.function.go_json()}

    def go_string(self) -> str:
        """A tool prints as its JSON."""
        return go_json(self, on_error="")


# ---- execution ---------------------------------------------------------------------------


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """Ollama's ``collate``: the system text and the messages with same-role runs merged.

    System contents are joined with a blank line. Consecutive messages of one role become one
    (contents joined with a blank line; the first message's other fields are kept), except
    ``tool`` messages, which are never merged. The input is not modified.
    """
    system: list[str] = []
    collated: list[Message] = []
    for msg in messages:
        if msg.role == "system":
            system.append(msg.content)
        if collated and collated[-1].role == msg.role and msg.role != "tool":
            last = collated[-1]
            collated[-1] = dataclasses.replace(last, content=last.content + "\n\n" + msg.content)
        else:
            collated.append(msg)
    return "\n\n".join(system), collated


def think_values(think: bool | str | None) -> dict[str, Any]:
    """``.Think``, ``.ThinkLevel`` and ``.IsThinkSet`` for a request's ``think`` value.

    ``None`` (not set) → false/""/false; ``True`` → true/"medium"/true; ``False`` →
    false/""/true; a level (``low medium high max``) → true/level/true.
    """
    if think is None:
        return {"Think": False, "ThinkLevel": "", "IsThinkSet": False}
    if isinstance(think, bool):
        return {"Think": think, "ThinkLevel": "medium" if think else "", "IsThinkSet": True}
    if think not in THINK_LEVELS:
        allowed = '"high", "medium", "low", "max", true, or false'
        raise ValueError(f'invalid think value: "{think}" (must be {allowed})')
    return {"Think": True, "ThinkLevel": think, "IsThinkSet": True}


def _as_message(message: Message | Mapping[str, Any]) -> Message:
    return message if isinstance(message, Message) else Message.from_dict(message)


def _as_tool(tool: Tool | Mapping[str, Any]) -> Tool:
    return tool if isinstance(tool, Tool) else Tool.from_dict(tool)


def _render_legacy(template: GoTemplate, messages: Sequence[Message], think: dict[str, Any]) -> str:
    """Legacy mode: one full render per completed turn, then the prefill render."""
    out: list[str] = []
    slots = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(template.execute({**slots, **think}))
        slots.update(System="", Prompt="", Response="")

    for msg in messages:
        if msg.role == "system":
            if slots["Prompt"] or slots["Response"]:
                flush()
            slots["System"] = msg.content
        elif msg.role == "user":
            if slots["Response"]:
                flush()
            slots["Prompt"] = msg.content
        elif msg.role == "assistant":
            slots["Response"] = msg.content
    out.append(template.execute_prefill({**slots, **think}))
    return "".join(out)


def render_prompt(
    template: GoTemplate,
    messages: Sequence[Message | Mapping[str, Any]] = (),
    *,
    tools: Sequence[Tool | Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    suffix: str | None = None,
    prompt: str | None = None,
) -> str:
    """The prompt text for ``messages`` (``Message`` objects or API JSON dicts).

    ``prompt`` with a non-empty ``suffix`` selects suffix (fill-in-the-middle) mode; a
    ``prompt`` alone is appended as a final user message (what ``/api/generate`` does).
    ``tools=None`` is a nil tool list (``{{ .Tools }}`` prints ``null``), ``[]`` an empty one.
    Raises :class:`~modelkit.errors.TemplateError` when the template fails, ``ValueError`` for
    a bad ``think`` value.
    """
    think_vars = think_values(think)
    if prompt and suffix:
        return template.execute({"Prompt": prompt, "Suffix": suffix, "Response": "", **think_vars})
    msgs = [_as_message(m) for m in messages]
    if prompt:
        msgs.append(Message(role="user", content=prompt))
    system, collated = collate(msgs)
    if not template.uses("messages"):
        return _render_legacy(template, collated, think_vars)
    tool_list = JSONList((_as_tool(t) for t in tools or ()), nil=tools is None)
    data = {
        "System": system,
        "Messages": collated,
        "Tools": tool_list,
        "Response": "",
        **think_vars,
    }
    return template.execute(data)
