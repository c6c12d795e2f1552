"""Request bodies of the inference routes (Ollama's field names; unknown fields ignored)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelkit.config import parse_duration


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive: a number of seconds or a Go duration string; negative = forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    return math.inf if seconds < 0 else seconds


def check_think(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in ("high", "medium", "low", "max"):
            return value
        raise ValueError(
            f'invalid think value: "{value}" (must be "high", "medium", "low", "max", true, '
            "or false)"
        )
    raise ValueError(f"think must be a boolean or string ({type(value).__name__} given)")


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = ""
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: Any = None
    think: Any = None
    format: Any = None
    grammar: str | None = None
    """Raw GBNF (a modelkit extension; Ollama has only ``format``)."""
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    debug_render_only: bool = Field(default=False, alias="_debug_render_only")
    """Answer with the rendered prompt instead of running the model (Ollama's debug flag)."""

    @field_validator("think")
    @classmethod
    def _think(cls, value: Any) -> Any:
        return check_think(value)

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: Any) -> Any:
        return keep_alive_seconds(value)

    @field_validator("format")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return None if value in (None, "", "null") else value


class GenerateBody(_Base):
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] = Field(default_factory=list)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str = ""

    @field_validator("role")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class ChatBody(_Base):
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class EmbedBody(_Base):
    input: str | list[Any] = ""
    dimensions: int | None = None


class EmbeddingsBody(_Base):
    prompt: str = ""
