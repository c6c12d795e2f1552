"""Splitting streamed model output into thinking, content and tool calls.

Both parsers are incremental: ``feed`` takes the next piece of text and returns what can be
emitted now, holding back any tail that could still turn into a tag; ``finish`` flushes.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


@dataclass
class ThinkingParser:
    """Routes text between ``open_tag`` and ``close_tag`` to thinking, the rest to content.

    ``inside`` starts True when the prompt already ended with the opening tag.
    """

    open_tag: str = "<think>"
    close_tag: str = "</think>"
    inside: bool = False
    done: bool = False
    _buffer: str = ""
    _strip_leading: bool = False  # drop whitespace between the closing tag and the answer

    def feed(self, text: str) -> tuple[str, str]:
        self._buffer += text
        thinking, content = [], []
        while self._buffer:
            if self.done:
                if self._strip_leading:
                    self._buffer = self._buffer.lstrip()
                    self._strip_leading = not self._buffer
                content.append(self._buffer)
                self._buffer = ""
                break
            if self.inside:
                at = self._buffer.find(self.close_tag)
                if at >= 0:
                    thinking.append(self._buffer[:at])
                    self._buffer = self._buffer[at + len(self.close_tag) :]
                    self.inside, self.done, self._strip_leading = False, True, True
                    continue
                keep = _partial_suffix(self._buffer, self.close_tag)
                thinking.append(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            # Before any thinking: only leading whitespace may precede the opening tag.
            stripped = self._buffer.lstrip()
            if stripped.startswith(self.open_tag):
                self._buffer = stripped[len(self.open_tag) :].lstrip()
                self.inside = True
                continue
            if self.open_tag.startswith(stripped):
                break  # could still become the opening tag
            self.done = True
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        rest, self._buffer = self._buffer, ""
        if self.inside:
            return rest, ""
        return "", rest


def new_tool_call_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    index: int
    id: str = field(default_factory=new_tool_call_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": {"index": self.index, "name": self.name, "arguments": self.arguments},
        }


_TOOLCALLS_BLOCK = re.compile(r"\{\{-?\s*if\s+\.ToolCalls\s*-?\}\}(.*?)\{\{", re.DOTALL)
_JINJA_TOOL_TAGS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function_call>")


def tool_call_tag(template_text: str) -> str:
    """The text a model writes before its tool calls, read from its template (Ollama's rule:
    the first text in the ``{{ if .ToolCalls }}`` block, cut before ``{``; default ``{``)."""
    match = _TOOLCALLS_BLOCK.search(template_text)
    if match:
        tag = match.group(1).strip().split("{", 1)[0].strip()
        if tag.endswith("[") and len(tag) > 1:  # "[TOOL_CALLS] [" opens a JSON list
            tag = tag[:-1].rstrip()
        if tag:
            return tag
    for tag in _JINJA_TOOL_TAGS:
        if tag in template_text:
            return tag
    return "{"


def thinking_tags(template_text: str) -> tuple[str, str] | None:
    """``<think>``-style tags when the template renders thinking, else None."""
    for open_tag, close_tag in (("<think>", "</think>"), ("<thinking>", "</thinking>")):
        if open_tag in template_text and close_tag in template_text:
            return open_tag, close_tag
    return None


def _calls_in(value: Any, tool_names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "function" in item and isinstance(item["function"], dict):
            item = item["function"]
        name = item.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                continue
        if isinstance(name, str) and isinstance(args, dict):
            if tool_names and name not in tool_names:
                continue
            calls.append((name, args))
    return calls


@dataclass
class ToolCallParser:
    """Finds tool calls (JSON after ``tag``) in content; other text passes through."""

    tag: str = "{"
    tool_names: set[str] = field(default_factory=set)
    _buffer: str = ""
    _raw: str = ""  # everything since the tag, returned as content if no call is found
    _in_calls: bool = False
    _bare: bool = False  # the calls began without the tag
    _emitted_any: bool = False
    _count: int = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self._buffer += text
        if self._in_calls:
            self._raw += text
            return "", self._drain()
        if not self._emitted_any:
            # A bare JSON call at the very start of the output counts too: small models
            # often skip their template's tag.
            stripped = self._buffer.lstrip()
            if not stripped:
                return "", []
            if stripped.startswith(("{", "[") if self.tag == "{" else "{"):
                self._in_calls, self._bare = True, True
                self._buffer = self._raw = stripped
                return "", self._drain()
        if self.tag == "{":
            out, self._buffer = self._buffer, ""
            self._emitted_any = True
            return out, []
        at = self._buffer.find(self.tag)
        if at >= 0:
            before = self._buffer[:at]
            self._buffer = self._raw = self._buffer[at + len(self.tag) :]
            self._in_calls = True
            self._emitted_any = True
            return before, self._drain()
        keep = _partial_suffix(self._buffer, self.tag)
        out = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(self._buffer) - keep :]
        self._emitted_any = self._emitted_any or bool(out)
        return out, []

    def _drain(self) -> list[ToolCall]:
        """Parse every complete JSON value in the buffer into tool calls."""
        decoder = json.JSONDecoder()
        calls: list[ToolCall] = []
        while True:
            text = self._buffer.lstrip()
            for closing in ("</tool_call>", self.tag if self.tag != "{" else ""):
                if closing and text.startswith(closing):
                    text = text[len(closing) :].lstrip()
            start = next((i for i, ch in enumerate(text) if ch in "{["), -1)
            if start < 0:
                self._buffer = text
                return calls
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                self._buffer = text
                return calls  # incomplete: wait for more text
            for name, args in _calls_in(value, self.tool_names):
                calls.append(ToolCall(name, args, self._count))
                self._count += 1
            self._buffer = text[end:]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """Flush: text that never became a tool call is returned as content."""
        if self._in_calls:
            calls = self._drain()
            self._buffer = ""
            if not calls and self._count == 0:
                return ("" if self._bare else self.tag) + self._raw, []
            return "", calls
        rest, self._buffer = self._buffer, ""
        return rest, []
