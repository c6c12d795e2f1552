"""The assertions of a test spec: each one checks a model's answer and explains a failure."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from modelkit.validate.similarity import TEXT_SCORERS, cosine
from modelkit.validate.spec import Assertion

_SHOW = 200
DEFAULT_SIMILARITY = 0.5

# Embeds texts with a model (None: the model under test), for ``method: embedding``.
EmbedFn = Callable[[list[str], str | None], list[list[float]]]


@dataclass(frozen=True)
class ToolCallOut:
    name: str
    arguments: dict[str, Any]

    def describe(self) -> str:
        return f"{self.name}({json.dumps(self.arguments, ensure_ascii=False)})"


@dataclass(frozen=True)
class Output:
    """What a model answered to one case, and how fast (seconds; None when not measured)."""

    content: str
    done_reason: str
    eval_count: int
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    thinking: str = ""
    eval_duration: float | None = None
    """Seconds the server spent generating ``eval_count`` tokens."""
    ttft: float | None = None
    """Seconds from sending the request to the first streamed content, thinking or call."""
    total: float | None = None
    """Seconds from sending the request to the last event."""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.eval_duration or not self.eval_count:
            return None
        return self.eval_count / self.eval_duration


@dataclass(frozen=True)
class Failure:
    assertion: str
    message: str


def _show(text: str) -> str:
    shown = text if len(text) <= _SHOW else text[:_SHOW] + "…"
    return json.dumps(shown, ensure_ascii=False)


def _schema_error(schema: dict[str, Any], document: Any) -> str | None:
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(document)
    )
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else str(error.message)


def _check_text(kind: str, value: Any, text: str) -> str | None:
    if kind == "contains" and value not in text:
        return f"output does not contain {_show(value)}"
    if kind == "not_contains" and value in text:
        return f"output contains {_show(value)}"
    if kind == "regex" and re.search(value, text) is None:
        return f"output does not match /{value}/"
    if kind == "equals" and text.strip() != value.strip():
        return f"output is not {_show(value)}"
    if kind == "json_schema":
        try:
            document = json.loads(text)
        except ValueError as err:
            return f"output is not JSON ({err})"
        error = _schema_error(value, document)
        if error is not None:
            return f"output does not match the schema: {error}"
    return None


def _check_tool_call(value: dict[str, Any], calls: list[ToolCallOut]) -> str | None:
    name = value["name"]
    if not calls:
        return f"the model called no tool (wanted {name})"
    named = [c for c in calls if c.name == name]
    if not named:
        return f"no call of {name}"
    schema = value.get("arguments")
    if schema is None:
        return None
    errors = [_schema_error(schema, c.arguments) for c in named]
    if all(e is not None for e in errors):
        return f"{named[0].describe()}: arguments do not match the schema: {errors[0]}"
    return None


def similarity(value: dict[str, Any], text: str, embed: EmbedFn | None) -> float:
    """The best score of ``text`` against the assertion's reference text(s)."""
    references = value["to"] if isinstance(value["to"], list) else [value["to"]]
    method = value.get("method", "rouge_l")
    if method == "embedding":
        if embed is None:
            raise ValueError("this backend cannot embed texts")
        vectors = embed([text, *references], value.get("model"))
        return max(cosine(vectors[0], v) for v in vectors[1:])
    scorer = TEXT_SCORERS[method]
    return max(scorer(text, r) for r in references)


def _check_similar(value: dict[str, Any], text: str, embed: EmbedFn | None) -> str | None:
    wanted = float(value.get("min", DEFAULT_SIMILARITY))
    try:
        score = similarity(value, text, embed)
    except ValueError as err:
        return f"cannot score similarity: {err}"
    if score < wanted:
        method = value.get("method", "rouge_l")
        return f"similarity {score:.2f} ({method}) is below {wanted:.2f}"
    return None


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _check_speed(kind: str, value: float, output: Output) -> str | None:
    if kind == "max_ttft_ms":
        if output.ttft is None:
            return "no first token was measured (the answer was empty)"
        if output.ttft * 1000 > value:
            return f"first token after {output.ttft * 1000:.0f} ms, over {_number(value)} ms"
    elif kind == "max_total_ms":
        if output.total is not None and output.total * 1000 > value:
            return f"answer took {output.total * 1000:.0f} ms, over {_number(value)} ms"
    elif kind == "min_tokens_per_s":
        rate = output.tokens_per_second
        if rate is None:
            return "no generation speed was reported (no tokens or no eval_duration)"
        if rate < value:
            return f"{rate:.1f} tokens/s, under {_number(value)}"
    return None


def _problem(assertion: Assertion, output: Output, embed: EmbedFn | None) -> str | None:
    kind, value = assertion.kind, assertion.value
    if kind == "max_tokens":
        if output.eval_count > value:
            return f"output has {output.eval_count} tokens, more than {value}"
        return None
    if kind == "stops_with":
        if output.done_reason != value:
            return f"generation stopped with {output.done_reason!r}, not {value!r}"
        return None
    if kind == "tool_call":
        return _check_tool_call(value, output.tool_calls)
    if kind == "similar":
        return _check_similar(value, output.content, embed)
    if kind in ("max_ttft_ms", "max_total_ms", "min_tokens_per_s"):
        return _check_speed(kind, float(value), output)
    return _check_text(kind, value, output.content)


def check(assertion: Assertion, output: Output, embed: EmbedFn | None = None) -> Failure | None:
    """None when ``output`` satisfies ``assertion``, else why not (with the output shown)."""
    problem = _problem(assertion, output, embed)
    if problem is None:
        return None
    shown = f"output: {_show(output.content)}"
    if output.tool_calls and assertion.kind == "tool_call":
        shown = f"tool calls: {', '.join(c.describe() for c in output.tool_calls)}"
    return Failure(assertion.describe(), f"{problem}; {shown}")
