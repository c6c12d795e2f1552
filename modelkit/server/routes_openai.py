"""The OpenAI-compatible API as Ollama serves it: /v1/chat/completions, /v1/completions,
/v1/models, /v1/models/{model} and /v1/embeddings (/v1/responses: routes_responses.py).

Each route turns the OpenAI request into the native one, runs it through the same
:class:`InferenceService` calls as /api/chat, /api/generate and /api/embed, and rewrites the
answer. Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with
the native status; streams are server-sent events ending with ``data: [DONE]``.

Thinking is exposed as both ``reasoning`` (Ollama's name) and ``reasoning_content`` (the name
DeepSeek-style clients read), in messages and in stream deltas alike.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from modelkit.errors import ModelkitError
from modelkit.names import ModelName
from modelkit.runtime.logprobs import Logprob
from modelkit.runtime.parsing import ToolCall
from modelkit.runtime.scheduler import QueueFullError
from modelkit.runtime.service import ChatRequest, Event, GenerateRequest
from modelkit.server.body import read_body
from modelkit.server.errors import (
    APIError,
    handle_api_error,
    handle_domain_error,
    handle_queue_full,
)
from modelkit.server.routes_inference import (
    collect,
    service_of,
    stream_events,
    truncation_headers,
)
from modelkit.server.routes_models import tags
from modelkit.server.streaming import ndjson_line

# -- errors ----------------------------------------------------------------------------------


def error_object(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"message": message, "type": kind, "param": None, "code": None}


def openai_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": error_object(status, message)}, status_code=status)


async def _native_error(request: Request, err: Exception) -> JSONResponse | None:
    """The native handler's answer to ``err`` (same status and message), if it has one."""
    if isinstance(err, APIError):
        return await handle_api_error(request, err)
    if isinstance(err, QueueFullError):
        return await handle_queue_full(request, err)
    if isinstance(err, ModelkitError):
        return await handle_domain_error(request, err)
    return None


class OpenAIRoute(APIRoute):
    """A route whose errors come back in OpenAI's shape instead of Ollama's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (APIError, QueueFullError, ModelkitError) as err:
                native = await _native_error(request, err)
                assert native is not None
                message = json.loads(bytes(native.body))["error"]
                return openai_error(native.status_code, str(message))

        return route


router = APIRouter(route_class=OpenAIRoute)


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + ndjson_line(obj) + b"\n"


SSE_DONE = b"data: [DONE]\n\n"


# -- request bodies --------------------------------------------------------------------------


class LooseModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _StreamOptions(LooseModel):
    include_usage: bool = False


class _JsonSchema(LooseModel):
    schema_: Any = Field(default=None, alias="schema")


class _ResponseFormat(LooseModel):
    type: str = ""
    json_schema: _JsonSchema | None = None


class ReasoningConfig(LooseModel):
    effort: str = ""


class _Function(LooseModel):
    name: str = ""
    arguments: Any = ""


class _ToolCallIn(LooseModel):
    id: str = ""
    type: str = "function"
    function: _Function = Field(default_factory=_Function)


class _Message(LooseModel):
    role: str = ""
    content: Any = None
    reasoning: str = ""
    reasoning_content: str = ""
    tool_calls: list[_ToolCallIn] | None = None
    name: str = ""
    tool_call_id: str = ""


class SamplingBody(LooseModel):
    model: str = ""
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: Any = None
    temperature: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    top_p: float | None = None
    grammar: str | None = None
    """Raw GBNF, a modelkit extension (``extra_body={"grammar": ...}`` in the openai client)."""


class ChatCompletionBody(SamplingBody):
    messages: list[_Message] = Field(default_factory=list)
    max_completion_tokens: int | None = None
    response_format: _ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    reasoning: ReasoningConfig | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionBody(SamplingBody):
    prompt: str = ""
    suffix: str = ""
    logprobs: int | None = None


class EmbeddingsBody(LooseModel):
    model: str = ""
    input: Any = None
    dimensions: int | None = None
    encoding_format: str = ""


# -- request conversion ----------------------------------------------------------------------


def go_type(value: Any) -> str:
    """The Go type name Ollama's ``%T`` prints for a decoded JSON value."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def stop_words(stop: Any, *, strict: bool) -> list[str] | None:
    """``stop`` as a list; non-string items are dropped (chat) or rejected (completions)."""
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list):
        return None
    words = []
    for item in stop:
        if isinstance(item, str):
            words.append(item)
        elif strict:
            raise APIError(400, f"invalid type for 'stop' field: {go_type(item)}")
    return words


def sampling_options(body: SamplingBody, num_predict: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stop = stop_words(body.stop, strict=isinstance(body, CompletionBody))
    if stop is not None:
        options["stop"] = stop
    if num_predict is not None:
        options["num_predict"] = num_predict
    options["temperature"] = 1.0 if body.temperature is None else body.temperature
    if body.seed is not None:
        options["seed"] = body.seed
    if isinstance(body, CompletionBody):  # Ollama always sends these two for completions
        options["frequency_penalty"] = body.frequency_penalty or 0.0
        options["presence_penalty"] = body.presence_penalty or 0.0
        options["top_p"] = body.top_p or 1.0  # 0 means unset there
        return options
    if body.frequency_penalty is not None:
        options["frequency_penalty"] = body.frequency_penalty
    if body.presence_penalty is not None:
        options["presence_penalty"] = body.presence_penalty
    options["top_p"] = 1.0 if body.top_p is None else body.top_p
    return options


_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


def think_value(body: ChatCompletionBody) -> bool | str | None:
    effort = body.reasoning.effort if body.reasoning is not None else body.reasoning_effort or ""
    return think_from_effort(effort)


def think_from_effort(effort: str) -> bool | str | None:
    """The native ``think`` for an OpenAI reasoning effort (400 for an unknown one)."""
    if not effort:
        return None
    if effort not in _EFFORTS:
        *most, last = (f'"{e}"' for e in _EFFORTS)
        allowed = f"{', '.join(most)}, or {last}"
        raise APIError(400, f'invalid reasoning value: "{effort}" (must be {allowed})')
    return _EFFORTS[effort]


def response_format(body: ChatCompletionBody) -> Any:
    fmt = body.response_format
    if fmt is None:
        return None
    kind = fmt.type.strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema" and fmt.json_schema is not None:
        return fmt.json_schema.schema_
    return None


def native_tool_calls(calls: list[_ToolCallIn]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        args = call.function.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                raise APIError(400, "invalid tool call arguments") from None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise APIError(400, "invalid tool call arguments")
        native: dict[str, Any] = {"function": {"name": call.function.name, "arguments": args}}
        if call.id:
            native["id"] = call.id
        out.append(native)
    return out


_IMAGE_PREFIXES = (
    "data:;base64,",
    *(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp")),
)


def image_data(part: dict[str, Any]) -> str:
    """The base64 payload of an ``image_url`` part: a JPEG/PNG/WebP data URI as in Ollama,
    or bare base64."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise APIError(400, "invalid message format")
    if url.startswith(("http://", "https://")):
        raise APIError(
            400,
            "image URLs are not currently supported, please use base64 encoded data instead",
        )
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None and url.startswith("data:"):  # another media type
        raise APIError(400, "invalid image input")
    # Bare base64 is taken too (some clients send it without the data: prefix).
    data = url[len(prefix) :] if prefix is not None else url
    try:
        if not base64.b64decode(data, validate=True):
            raise ValueError("empty")
    except ValueError:
        raise APIError(400, "invalid image input") from None
    return data


def _tool_name(messages: list[_Message], call_id: str) -> str:
    for msg in reversed(messages):  # last one wins, as in Ollama
        for call in msg.tool_calls or []:
            if call.id == call_id:
                return call.function.name
    return ""


def native_messages(messages: list[_Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.role.lower()
        extra: dict[str, Any] = {}
        if role == "tool":
            name = msg.name or (_tool_name(messages, msg.tool_call_id) if msg.tool_call_id else "")
            if name:
                extra["tool_name"] = name
        if msg.tool_call_id:
            extra["tool_call_id"] = msg.tool_call_id
        thinking = msg.reasoning or msg.reasoning_content
        if thinking:
            extra["thinking"] = thinking
        if msg.tool_calls:
            extra["tool_calls"] = native_tool_calls(msg.tool_calls)
        content = msg.content
        if isinstance(content, str):
            out.append({"role": role, "content": content, **extra})
        elif isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                if not isinstance(part, dict):
                    raise APIError(400, "invalid message format")
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    parts.append({"role": role, "content": part["text"]})
                elif part.get("type") == "image_url":
                    parts.append({"role": role, "content": "", "images": [image_data(part)]})
                else:
                    raise APIError(400, "invalid message format")
            if parts:
                parts[-1].update(extra)
            out.extend(parts)
        elif msg.tool_calls is not None:
            out.append({"role": role, "content": "", **extra})
        else:
            raise APIError(400, f"invalid message content type: {go_type(content)}")
    return out


# -- responses -------------------------------------------------------------------------------


def openai_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        native = call.to_json()
        function = native["function"]
        out.append(
            {
                "id": native["id"],
                "index": function["index"],
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": json.dumps(function["arguments"], ensure_ascii=False),
                },
            }
        )
    return out


def usage(event: Event) -> dict[str, int]:
    prompt = event.stats.prompt_eval_count if event.stats else 0
    completion = event.stats.eval_count if event.stats else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def with_reasoning(message: dict[str, Any], thinking: str) -> dict[str, Any]:
    if thinking:
        message["reasoning"] = thinking
        message["reasoning_content"] = thinking
    return message


def chat_logprobs(logprobs: list[Logprob]) -> dict[str, Any]:
    """A chat choice's ``logprobs``: ``{"content": [token, logprob, bytes, top_logprobs]}``."""
    content = []
    for lp in logprobs:
        entry = lp.chosen.to_json()
        entry["top_logprobs"] = [t.to_json() for t in lp.top]
        content.append(entry)
    return {"content": content}


def completion_logprobs(logprobs: list[Logprob], offset: int = 0) -> dict[str, Any]:
    """A text completion's ``logprobs`` in OpenAI's legacy shape (parallel lists)."""
    offsets, at = [], offset
    for lp in logprobs:
        offsets.append(at)
        at += len(lp.chosen.token)
    return {
        "tokens": [lp.chosen.token for lp in logprobs],
        "token_logprobs": [lp.chosen.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in logprobs],
        "text_offset": offsets,
    }


def finish_reason(done_reason: str, tool_calls: bool) -> str | None:
    if tool_calls:
        return "tool_calls"
    return done_reason or None


class _Completion:
    """What every object of one answer shares: id, object name, creation time, model."""

    def __init__(self, prefix: str, obj: str, model: str) -> None:
        self.head: dict[str, Any] = {
            "id": f"{prefix}-{secrets.randbelow(999)}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_ollama",
        }

    def make(self, choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {**self.head, "choices": choices, **more}


async def _sse_stream(
    events: Iterator[Event], chunks: Callable[[Event], list[dict[str, Any]]]
) -> AsyncIterator[bytes]:
    try:
        async for event in stream_events(events):
            for chunk in chunks(event):
                yield sse(chunk)
    except ModelkitError as err:
        yield sse({"error": error_object(500, str(err))})
        return
    yield SSE_DONE


def _sse_response(
    events: Iterator[Event], chunks: Callable[[Event], list[dict[str, Any]]]
) -> StreamingResponse:
    return StreamingResponse(
        _sse_stream(events, chunks),
        media_type="text/event-stream",
        headers=truncation_headers(events),
    )


# -- /v1/chat/completions --------------------------------------------------------------------


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = await read_body(request, ChatCompletionBody)
    if not body.messages:
        raise APIError(400, "[] is too short - 'messages'")
    num_predict = (
        body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    )
    req = ChatRequest(
        model=body.model,
        messages=native_messages(body.messages),
        tools=body.tools or None,
        format=response_format(body),
        grammar=body.grammar,
        options=sampling_options(body, num_predict),
        think=think_value(body),
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    if not body.model:
        raise APIError(400, "model is required")
    service = service_of(request)
    events = await service.run_async(await run_in_threadpool(service.chat_job, req))
    answer = _Completion("chatcmpl", "chat.completion", body.model)

    if body.stream:
        answer.head["object"] = "chat.completion.chunk"
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        sent_calls = False

        def chunks(event: Event) -> list[dict[str, Any]]:
            nonlocal sent_calls
            deltas: list[dict[str, Any]] = []
            if event.thinking:
                deltas.append(with_reasoning({"role": "assistant", "content": ""}, event.thinking))
            if event.content or event.tool_calls:
                delta: dict[str, Any] = {"role": "assistant", "content": event.content}
                if event.tool_calls:
                    delta["tool_calls"] = openai_tool_calls(event.tool_calls)
                    sent_calls = True
                deltas.append(delta)
            choices: list[dict[str, Any]] = [
                {"index": 0, "delta": d, "finish_reason": None} for d in deltas
            ]
            if event.done:
                reason = finish_reason(event.done_reason, sent_calls)
                choices.append({"index": 0, "delta": {}, "finish_reason": reason})
            if event.logprobs and choices:
                choices[0]["logprobs"] = chat_logprobs(event.logprobs)
            out = [answer.make([c]) for c in choices]
            if event.done and include_usage:
                out.append(answer.make([], usage=usage(event)))
            return out

        return _sse_response(events, chunks)

    merged = await collect(events)
    message: dict[str, Any] = {"role": "assistant", "content": merged.content}
    with_reasoning(message, merged.thinking)
    if merged.tool_calls:
        message["tool_calls"] = openai_tool_calls(merged.tool_calls)
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(merged.done_reason, bool(merged.tool_calls)),
    }
    if req.logprobs or req.top_logprobs:
        choice["logprobs"] = chat_logprobs(merged.logprobs)
    return JSONResponse(
        answer.make([choice], usage=usage(merged)), headers=truncation_headers(events)
    )


# -- /v1/completions -------------------------------------------------------------------------


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    body = await read_body(request, CompletionBody)
    options = sampling_options(body, body.max_tokens)
    if not body.model:
        raise APIError(400, "model is required")
    service = service_of(request)
    answer = _Completion("cmpl", "text_completion", body.model)
    events: Iterator[Event]
    if not body.prompt and not body.suffix:  # the native API's "load the model" request
        await service.load_only_async(body.model, None)
        events = iter([Event(done=True, done_reason="load")])
    else:
        req = GenerateRequest(
            body.model,
            body.prompt,
            body.suffix,
            options=options,
            grammar=body.grammar,
            logprobs=bool(body.logprobs),
            top_logprobs=body.logprobs or 0,
        )
        events = await service.run_async(await run_in_threadpool(service.generate_job, req))
    text_so_far = 0

    def choice(event: Event) -> dict[str, Any]:
        nonlocal text_so_far
        out = {"text": event.content, "index": 0, "finish_reason": event.done_reason or None}
        if body.logprobs:
            out["logprobs"] = completion_logprobs(event.logprobs, text_so_far)
        text_so_far += len(event.content)
        return out

    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

        def chunks(event: Event) -> list[dict[str, Any]]:
            more = {"usage": zero} if include_usage else {}
            out = [answer.make([choice(event)], **more)]
            if event.done and include_usage:
                out.append(answer.make([], usage=usage(event)))
            return out

        return _sse_response(events, chunks)

    merged = await collect(events)
    return JSONResponse(
        answer.make([choice(merged)], usage=usage(merged)), headers=truncation_headers(events)
    )


# -- /v1/models ------------------------------------------------------------------------------


def model_object(name: str, modified: datetime) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": int(modified.timestamp()),
        "owned_by": ModelName.parse(name).namespace,
    }


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    entries = tags(request)["models"]
    data = [model_object(m["name"], datetime.fromisoformat(m["modified_at"])) for m in entries]
    return {"object": "list", "data": data or None}


@router.get("/v1/models/{model:path}")
def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    view = service_of(request).view(model)
    return model_object(model, view.stored.modified)


# -- /v1/embeddings --------------------------------------------------------------------------


def embedding_value(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    body = await read_body(request, EmbeddingsBody)
    encoding = body.encoding_format.lower()
    if encoding not in ("", "float", "base64"):
        raise APIError(
            400,
            f"Invalid value for 'encoding_format' = {body.encoding_format}. "
            "Supported values: ['float', 'base64'].",
        )
    inputs = [""] if body.input == "" else body.input
    if not inputs:
        raise APIError(400, "invalid input")
    if not body.model:
        raise APIError(400, "model is required")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise APIError(400, "invalid input type")
    service = service_of(request)
    result = await service.embed_async(body.model, texts, dimensions=body.dimensions)
    data = [
        {"object": "embedding", "embedding": embedding_value(vector, encoding), "index": i}
        for i, vector in enumerate(result.embeddings)
    ]
    count = result.prompt_eval_count
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": count, "total_tokens": count},
        }
    )
