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


# A Markdown fence that may hold tool calls: ```json or a bare ```, then a newline.
_FENCE = "```"
_FENCE_OPEN = re.compile(r"```[ \t]*(?:(?i:json)[ \t]*)?\r?\n")
# What a fence opener looks like before its newline has come.
_FENCE_OPEN_PARTIAL = re.compile(r"```[ \t]*(?:(?i:json)[ \t]*\r?|(?i:jso|js|j)|\r)?")


@dataclass
class ToolCallParser:
    """Finds tool calls (JSON after ``tag``) in content; other text passes through.

    Besides the template's tag, two shapes small models write are read as calls:

    * bare JSON at the very start of the output (``{"name": ..., "arguments": ...}``);
    * when ``tool_names`` is given, a Markdown fence (```` ```json ```` or a plain
      ```` ``` ````) whose content is one or more JSON calls -- each an object with the
      ``name`` of an offered tool and ``arguments`` (or ``parameters``) -- as llama.cpp's
      parser for this format accepts.  Any other fence passes through unchanged, as do
      the text before and after it.
    """

    tag: str = "{"
    tool_names: set[str] = field(default_factory=set)
    _buffer: str = ""
    _raw: str = ""  # everything since the tag, returned as content if no call is found
    _in_calls: bool = False
    _bare: bool = False  # the calls began without the tag
    _emitted_any: bool = False
    _count: int = 0
    _fence: str | None = None  # the opener of a fence that may still hold tool calls
    _in_code: bool = False  # inside an ordinary fenced block: its closing ``` opens nothing

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self._buffer += text
        if self._in_calls:
            self._raw += text
            return "", self._drain()
        out: list[str] = []
        calls: list[ToolCall] = []
        while self._buffer and not self._in_calls:
            if self._fence is not None:
                progress = self._step_fence(out, calls)
            elif self._in_code:
                progress = self._step_code(out)
            else:
                progress = self._step_text(out, calls)
            if not progress:
                break
        return "".join(out), calls

    def _emit(self, out: list[str], text: str) -> None:
        if text:
            out.append(text)
            self._emitted_any = True

    def _step_text(self, out: list[str], calls: list[ToolCall]) -> bool:
        """Outside calls and fences: emit text up to a tag or fence.  True to go on."""
        buffer = self._buffer
        if not self._emitted_any:
            # A bare JSON call at the very start of the output counts too: small models
            # often skip their template's tag.
            stripped = buffer.lstrip()
            if not stripped:
                return False
            if stripped.startswith(("{", "[") if self.tag == "{" else "{"):
                self._in_calls, self._bare = True, True
                self._buffer = self._raw = stripped
                calls += self._drain()
                return False
        tag_at = buffer.find(self.tag) if self.tag != "{" else -1
        fence_at = buffer.find(_FENCE) if self.tool_names else -1
        if tag_at >= 0 and (fence_at < 0 or tag_at < fence_at):
            self._emit(out, buffer[:tag_at])
            self._buffer = self._raw = buffer[tag_at + len(self.tag) :]
            self._in_calls = self._emitted_any = True
            calls += self._drain()
            return False
        if fence_at >= 0:
            self._emit(out, buffer[:fence_at])
            rest = buffer[fence_at:]
            opener = _FENCE_OPEN.match(rest)
            if opener:
                self._fence, self._buffer = opener.group(), rest[opener.end() :]
                return True
            self._buffer = rest
            if _FENCE_OPEN_PARTIAL.fullmatch(rest):
                return False  # wait for the rest of the opener
            self._emit(out, _FENCE)  # ```python and the like: an ordinary block
            self._buffer, self._in_code = rest[len(_FENCE) :], True
            return True
        keep = _partial_suffix(buffer, self.tag) if self.tag != "{" else 0
        if self.tool_names:
            keep = max(keep, _partial_suffix(buffer, _FENCE))
        self._emit(out, buffer[: len(buffer) - keep])
        self._buffer = buffer[len(buffer) - keep :]
        return False

    def _step_code(self, out: list[str]) -> bool:
        """Inside an ordinary fenced block: pass text through up to its closing fence."""
        at = self._buffer.find(_FENCE)
        if at >= 0:
            self._emit(out, self._buffer[: at + len(_FENCE)])
            self._buffer, self._in_code = self._buffer[at + len(_FENCE) :], False
            return True
        keep = _partial_suffix(self._buffer, _FENCE)
        self._emit(out, self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _step_fence(self, out: list[str], calls: list[ToolCall]) -> bool:
        """After a fence opener: hold the fence until it closes, then emit its calls, or
        the whole fence as text; let it through as soon as it cannot be a call."""
        assert self._fence is not None
        body = self._buffer
        close_at = body.find(_FENCE)
        head = body if close_at < 0 else body[:close_at]
        state = self._fence_head(head)
        if state is False:
            self._emit(out, self._fence)
            self._fence, self._in_code = None, True
            return True
        if close_at < 0:
            return False
        found = self._fence_calls(head) if state else None
        if found is None:
            self._emit(out, self._fence + head + _FENCE)
        else:
            calls += self._numbered(found)
            self._emitted_any = True
        self._fence, self._buffer = None, body[close_at + len(_FENCE) :]
        return True

    def _fence_head(self, body: str) -> bool | None:
        """Whether a fence's content starts like a call of an offered tool
        (``[tag] [{"name": "<tool>"``): True, False, or None while undecided."""
        text = body.lstrip()
        if self.tag != "{":
            if text.startswith(self.tag):
                text = text[len(self.tag) :].lstrip()
            elif self.tag.startswith(text):
                return None
        if text.startswith("["):
            text = text[1:].lstrip()
        for token in ("{", '"name"', ":", '"'):
            if not text.startswith(token):
                return None if token.startswith(text) else False
            text = text[len(token) :]
            if token != '"':
                text = text.lstrip()
        names = [name + '"' for name in self.tool_names]
        if any(text.startswith(name) for name in names):
            return True
        return None if any(name.startswith(text) for name in names) else False

    def _fence_calls(self, body: str) -> list[tuple[str, dict[str, Any]]] | None:
        """The calls a fence holds, or None unless all of its content is offered calls."""
        skip = [t for t in (self.tag, "<tool_call>", "</tool_call>") if t != "{"]
        if self.tag.startswith("<") and self.tag.endswith(">"):
            skip.append("</" + self.tag[1:])
        decoder = json.JSONDecoder()
        found: list[tuple[str, dict[str, Any]]] = []
        text = body
        while True:
            text = text.lstrip()
            while any(text.startswith(t) for t in skip):
                text = text[len(next(t for t in skip if text.startswith(t))) :].lstrip()
            if not text:
                return found or None
            if text[0] not in "{[":
                return None
            try:
                value, end = decoder.raw_decode(text)
            except ValueError:
                return None
            items = value if isinstance(value, list) else [value]
            for item in items:
                call = item.get("function", item) if isinstance(item, dict) else None
                if not isinstance(call, dict) or not ({"arguments", "parameters"} & set(call)):
                    return None
            calls = _calls_in(value, self.tool_names)
            if not items or len(calls) != len(items):
                return None
            found += calls
            text = text[end:]

    def _numbered(self, found: list[tuple[str, dict[str, Any]]]) -> list[ToolCall]:
        calls = []
        for name, args in found:
            calls.append(ToolCall(name, args, self._count))
            self._count += 1
        return calls

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
            calls += self._numbered(_calls_in(value, self.tool_names))
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
        if self._fence is not None:
            # The output ended inside the fence (a stop string or the token limit).
            opener, self._fence = self._fence, None
            body = rest.rstrip().rstrip("`")
            found = self._fence_calls(body) if self._fence_head(body) else None
            if found is None:
                return opener + rest, []
            return "", self._numbered(found)
        return rest, []
