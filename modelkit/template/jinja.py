"""Hugging Face chat templates (Jinja2), e.g. a GGUF's ``tokenizer.chat_template``.

Rendered the way Hugging Face ``transformers`` renders them: Jinja2's
``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks`` and the
``loopcontrols`` extension, a ``tojson`` filter that keeps non-ASCII text, and the globals
``raise_exception(message)`` and ``strftime_now(format)``. The context holds ``messages``
(dicts with ``role``/``content`` and, when set, ``thinking``/``reasoning_content``,
``tool_calls``, ``name``/``tool_name``, ``tool_call_id``), ``tools`` (JSON-schema dicts, or
``None``), ``add_generation_prompt``, ``bos_token``/``eos_token`` and any extra variables.

:func:`is_jinja_template` tells such a template from an Ollama Go template.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.sandbox

from modelkit.errors import TemplateError
from modelkit.template.functions import BUILTINS
from modelkit.template.prompt import Message, Tool, ToolCall
from modelkit.template.values import json_tree

__all__ = ["JinjaTemplate", "is_jinja_template", "message_to_jinja", "tool_to_jinja"]


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(str(message), name="chat_template")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
        undefined=jinja2.Undefined,
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _tool_call_to_jinja(call: ToolCall) -> dict[str, Any]:
    function = {
        "name": call.function.name,
        "arguments": dict(call.function.arguments),
        "index": call.function.index,
    }
    entry: dict[str, Any] = {"type": "function", "function": function}
    if call.id:
        entry["id"] = call.id
    return entry


def message_to_jinja(message: Message) -> dict[str, Any]:
    """A message as a chat template expects it (OpenAI/Hugging Face field names)."""
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        data["thinking"] = message.thinking
        data["reasoning_content"] = message.thinking
    if message.tool_calls:
        data["tool_calls"] = [_tool_call_to_jinja(call) for call in message.tool_calls]
    if message.tool_name:
        data["name"] = message.tool_name
        data["tool_name"] = message.tool_name
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    return data


def tool_to_jinja(tool: Tool) -> dict[str, Any]:
    """A tool as its JSON-schema dict (``{"type": "function", "function": {...}}``)."""
    tree = json_tree(tool)
    assert isinstance(tree, dict)
    return tree


def _syntax_error(exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError(exc.message or str(exc), name="chat_template", line=exc.lineno or 0)


class JinjaTemplate:
    """A compiled Hugging Face chat template.

    ``bos_token``/``eos_token`` and ``context`` (extra variables, e.g. ``enable_thinking``)
    are available to every render. Raises :class:`TemplateError` for a template that does not
    compile.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.context: dict[str, Any] = {"bos_token": bos_token, "eos_token": eos_token}
        self.context.update(context or {})
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise _syntax_error(exc) from None

    def render(
        self,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        tools: Sequence[Tool | Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **variables: Any,
    ) -> str:
        """The prompt for ``messages`` (``Message`` objects or ready-made dicts).

        ``tools`` (``Tool`` objects or JSON-schema dicts) is passed as ``None`` when empty, as
        ``transformers`` does. Raises :class:`TemplateError` when rendering fails (including
        ``raise_exception`` calls from the template).
        """
        context = dict(self.context)
        context.update(variables)
        context["messages"] = [
            message_to_jinja(m) if isinstance(m, Message) else dict(m) for m in messages
        ]
        context["tools"] = (
            [tool_to_jinja(t) if isinstance(t, Tool) else dict(t) for t in tools] if tools else None
        )
        context["add_generation_prompt"] = add_generation_prompt
        try:
            return self._template.render(context)
        except TemplateError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise _syntax_error(exc) from None
        except Exception as exc:  # the sandbox and template code raise anything
            raise TemplateError(f"{type(exc).__name__}: {exc}", name="chat_template") from exc


# ---- telling Jinja2 from Go -------------------------------------------------------------

_ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
_JINJA_STATEMENT = re.compile(r"\{%|\{#")
_GO_KEYWORDS = {
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "nil",
    "true",
    "false",
}
_JINJA_FILTER = re.compile(
    r"\|\s*(?:tojson|trim|length|safe|upper|lower|default|join|string|int|"
    r"first|last|list|items|replace|capitalize|title)\b"
)
_JINJA_SYNTAX = re.compile(r"\w\[|\w\.\w|['\"]\s*\+|\+\s*['\"]|\bnot\s|\bin\s|\bis\s")


def _vote(body: str) -> int:
    """+1 when an action's body reads as Jinja2, -1 as Go, 0 when it could be either."""
    text = body.strip()
    if not text or text.startswith(("/*", ".", "$", "(")):
        return -1 if text else 0
    if _JINJA_FILTER.search(text) or _JINJA_SYNTAX.search(text):
        return 1
    word = re.match(r"[A-Za-z_]\w*", text)
    if word is None:
        return 0
    name = word.group(0)
    if name in _GO_KEYWORDS or name in BUILTINS:
        return -1
    return 1


def is_jinja_template(text: str) -> bool:
    """Whether ``text`` is a Jinja2 template rather than a Go template.

    ``{%``/``{#`` tags decide at once; otherwise each ``{{ ... }}`` votes: ``.Field``,
    ``$var``, Go keywords and functions for Go; variables such as ``messages``/``bos_token``,
    subscripts (``message['content']``), attribute access and Jinja filters for Jinja2. Text
    without actions is a (trivial) Go template.
    """
    if _JINJA_STATEMENT.search(text):
        return True
    score = sum(_vote(body) for body in _ACTION.findall(text))
    return score > 0
