"""From a stored model and a request to the exact prompt text: which template (the model's Go
TEMPLATE, a Jinja2 TEMPLATE, or the GGUF's own chat template), the effective messages
(SYSTEM, MESSAGEs, the request's), and truncation of old messages to fit ``num_ctx``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelkit.errors import InferenceError, TemplateError
from modelkit.runtime.images import IMAGE_TAG
from modelkit.runtime.parsing import thinking_tags, tool_call_tag
from modelkit.store import ModelView, Store, read_gguf_info
from modelkit.template import (
    DEFAULT_TEMPLATE_TEXT,
    GoTemplate,
    JinjaTemplate,
    is_jinja_template,
    render_prompt,
)

Messages = list[dict[str, Any]]


@dataclass
class ChatTemplate:
    """A model's prompt template of either kind, with the tags its output uses."""

    text: str
    go: GoTemplate | None = None
    jinja: JinjaTemplate | None = None

    @classmethod
    def for_model(cls, view: ModelView, gguf_chat_template: str | None) -> ChatTemplate:
        """The model's TEMPLATE; without one, the GGUF's chat template (which Ollama ignores);
        without either, Ollama's ``{{ .Prompt }}``."""
        text = view.template
        if text is None and gguf_chat_template:
            text = gguf_chat_template
        if text is None:
            text = DEFAULT_TEMPLATE_TEXT
        return cls.parse(text)

    @classmethod
    def for_stored_model(cls, store: Store, view: ModelView) -> ChatTemplate:
        """As :meth:`for_model`, reading the GGUF's chat template from the store if needed."""
        gguf_template = None
        if view.template is None and view.model is not None:
            gguf_template = read_gguf_info(store.blob_path(view.model.digest)).chat_template
        return cls.for_model(view, gguf_template)

    @classmethod
    def parse(cls, text: str) -> ChatTemplate:
        if is_jinja_template(text):
            return cls(text, jinja=JinjaTemplate(text))
        return cls(text, go=GoTemplate(text))

    @property
    def capabilities(self) -> list[str]:
        caps = ["completion"]
        if self.go is not None:
            if self.go.uses("tools"):
                caps.append("tools")
            if self.go.uses("suffix"):
                caps.append("insert")
        elif "tools" in self.text:
            caps.append("tools")
        if thinking_tags(self.text):
            caps.append("thinking")
        return caps

    @property
    def tool_tag(self) -> str:
        return tool_call_tag(self.text)

    def render(
        self,
        messages: Messages,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        think: bool | str | None = None,
        suffix: str | None = None,
        prompt: str | None = None,
    ) -> str:
        try:
            if self.go is not None:
                return render_prompt(
                    self.go, messages, tools=tools, think=think, suffix=suffix, prompt=prompt
                )
            assert self.jinja is not None
            msgs = list(messages)
            if prompt:
                msgs.append({"role": "user", "content": prompt})
            variables: dict[str, Any] = {}
            if think is not None:
                variables["enable_thinking"] = bool(think)
            return self.jinja.render(msgs, tools=list(tools) if tools else None, **variables)
        except ValueError as err:
            raise InferenceError(str(err)) from None
        except TemplateError as err:
            raise InferenceError(f"template error: {err}") from None


def chat_messages(
    view: ModelView, request_messages: Messages, system: str | None = None
) -> Messages:
    """Ollama's effective messages: the model's MESSAGEs then the request's, with the model's
    SYSTEM (or ``system``) first unless the request begins with its own system message."""
    messages: Messages = [dict(m) for m in view.messages] + [dict(m) for m in request_messages]
    system_text = system if system is not None else view.system
    first_is_system = bool(request_messages) and request_messages[0].get("role") == "system"
    if system_text and not first_is_system:
        messages.insert(0, {"role": "system", "content": system_text})
    return messages


def fit_to_context(
    render: Callable[[Messages], str],
    count_tokens: Callable[[str], int],
    messages: Messages,
    num_ctx: int,
    *,
    truncate: bool = True,
) -> tuple[str, int]:
    """Render ``messages[i:]`` for the smallest i whose prompt fits ``num_ctx`` tokens,
    keeping the system messages of the dropped prefix and always the last message (Ollama's
    rule); also how many tokens that dropped. With ``truncate=False`` nothing is dropped
    (the engine then refuses a prompt that does not fit)."""
    whole = render(messages)
    if not truncate:
        return whole, 0
    whole_count = count_tokens(whole)
    if whole_count <= num_ctx:
        return whole, 0
    for start in range(1, len(messages)):
        dropped_system = [m for m in messages[:start] if m.get("role") == "system"]
        text = render(dropped_system + messages[start:])
        count = count_tokens(text)
        if count <= num_ctx or start == len(messages) - 1:
            return text, whole_count - count
    return whole, 0


IMAGE_PROMPT_TOKENS = 768
"""What an image is counted as when older messages are dropped to fit (Ollama's estimate:
the image's real size is known only once the projector has seen it)."""


def tag_images(messages: Messages) -> tuple[Messages, list[Any]]:
    """Ollama's image tags: each image of the messages, in order, gets the next index N and
    ``[img-N]`` in its message's text (in place of an ``[img]`` the text has, else in front);
    the engine puts the image there. Returns the tagged messages and the images in index
    order."""
    images: list[Any] = []
    tagged: Messages = []
    for message in messages:
        pictures = message.get("images") or []
        if not pictures:
            tagged.append(message)
            continue
        content = str(message.get("content") or "")
        for image in pictures:
            if "[img]" not in content:
                content = ("[img] " + content).strip()
            content = content.replace("[img]", f"[img-{len(images)}]", 1)
            images.append(image)
        tagged.append({**message, "content": content})
    return tagged, images


def image_count(prompt: str) -> int:
    """How many ``[img-N]`` tags a rendered prompt holds."""
    return len(IMAGE_TAG.findall(prompt))
