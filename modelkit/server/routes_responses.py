"""POST /v1/responses: OpenAI's Responses API, stateless, as Ollama serves it.

The request's ``instructions`` and ``input`` (a string or items: messages with text and image
parts, function calls and their outputs) become a native chat; the answer comes back as
output items — a reasoning summary, a message with ``output_text``, function calls — either
whole or as named server-sent events (``event: <type>``), ``response.created`` first and
``response.completed`` (or ``response.failed``) last.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field

from modelkit.errors import ModelkitError
from modelkit.runtime.parsing import ToolCall
from modelkit.runtime.service import ChatRequest, Event
from modelkit.server.body import read_body
from modelkit.server.errors import APIError
from modelkit.server.routes_inference import (
    collect,
    service_of,
    stream_events,
    truncation_headers,
)
from modelkit.server.routes_openai import (
    LooseModel,
    OpenAIRoute,
    ReasoningConfig,
    SamplingBody,
    image_data,
    sampling_options,
    think_from_effort,
)
from modelkit.server.streaming import ndjson_line

router = APIRouter(route_class=OpenAIRoute)


class _TextFormat(LooseModel):
    type: str = "text"
    name: str = ""
    schema_: Any = Field(default=None, alias="schema")


class _Text(LooseModel):
    format: _TextFormat | None = None


class ResponsesBody(SamplingBody):
    input: Any = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    max_output_tokens: int | None = None
    reasoning: ReasoningConfig | None = None
    text: _Text | None = None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# -- request -----------------------------------------------------------------------------------


def native_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses' flat function tools (``{"type","name","parameters"}``) in the native shape."""
    out = []
    for tool in tools or []:
        if tool.get("type") != "function":
            raise APIError(400, f"unsupported tool type: {tool.get('type')}")
        if "function" in tool:  # already the chat-completions shape
            out.append(tool)
            continue
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": function})
    return out or None


def _text_of(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"content": part["text"]}
    if kind == "input_image":
        return {"content": "", "images": [image_data({"image_url": part.get("image_url")})]}
    raise APIError(400, f"invalid content part: {kind}")


def _message(item: dict[str, Any]) -> list[dict[str, Any]]:
    role = str(item.get("role", "user")).lower()
    role = "system" if role == "developer" else role
    content = item.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if isinstance(content, list):
        return [{"role": role, **_text_of(p)} for p in content if isinstance(p, dict)]
    raise APIError(400, "invalid message content")


def _arguments(raw: Any) -> dict[str, Any]:
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise APIError(400, "invalid tool call arguments") from None
    if not isinstance(args, dict):
        raise APIError(400, "invalid tool call arguments")
    return args


def native_messages(body: ResponsesBody) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    if not isinstance(items, list) or not items:
        raise APIError(400, "input is required")
    names: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise APIError(400, "invalid input item")
        kind = item.get("type", "message")
        if kind == "message":
            messages += _message(item)
        elif kind == "function_call":
            call_id, name = str(item.get("call_id", "")), str(item.get("name", ""))
            names[call_id] = name
            call = {
                "id": call_id,
                "function": {"name": name, "arguments": _arguments(item.get("arguments"))},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls are one assistant turn
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = str(item.get("call_id", ""))
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "content": output if isinstance(output, str) else json.dumps(output),
                    "tool_call_id": call_id,
                    "tool_name": names.get(call_id, ""),
                }
            )
        elif kind != "reasoning":  # earlier reasoning is not replayed, as in Ollama
            raise APIError(400, f"invalid input item type: {kind}")
    return messages


def text_format(body: ResponsesBody) -> Any:
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema" and fmt.schema_ is not None:
        return fmt.schema_
    raise APIError(400, f"invalid text format: {fmt.type}")


# -- response ----------------------------------------------------------------------------------


def _usage(event: Event) -> dict[str, Any]:
    stats = event.stats
    prompt = stats.prompt_eval_count if stats else 0
    completion = stats.eval_count if stats else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": stats.cached_count if stats else 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": summary}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status else []
    return {
        "id": item_id,
        "type": "message",
        "status": status or "in_progress",
        "role": "assistant",
        "content": content,
    }


def call_item(item_id: str, call: ToolCall, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
    }


class ResponseObject:
    """The response envelope: what the request asked, and the outcome once known."""

    def __init__(self, body: ResponsesBody) -> None:
        self.id = _new_id("resp")
        self.created_at = int(time.time())
        self.body = body
        self.tools = body.tools or []

    def make(
        self, status: str, output: list[dict[str, Any]], final: Event | None = None
    ) -> dict[str, Any]:
        fmt = self.body.text.format if self.body.text and self.body.text.format else None
        incomplete = status == "incomplete"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": self.body.instructions,
            "max_output_tokens": self.body.max_output_tokens,
            "model": self.body.model,
            "output": output,
            "parallel_tool_calls": True,
            "reasoning": {
                "effort": self.body.reasoning.effort if self.body.reasoning else None,
                "summary": None,
            },
            "temperature": self.body.temperature,
            "text": {"format": fmt.model_dump(by_alias=True) if fmt else {"type": "text"}},
            "tool_choice": "auto",
            "tools": self.tools,
            "top_p": self.body.top_p,
            "truncation": "disabled",
            "usage": _usage(final) if final is not None else None,
            "metadata": {},
        }


def final_status(event: Event) -> str:
    return "incomplete" if event.done_reason == "length" and not event.tool_calls else "completed"


def whole_output(event: Event) -> list[dict[str, Any]]:
    output = []
    if event.thinking:
        output.append(reasoning_item(_new_id("rs"), event.thinking))
    if event.content or not event.tool_calls:
        output.append(message_item(_new_id("msg"), event.content))
    for call in event.tool_calls:
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        output.append(call_item(_new_id("fc"), call, arguments, "completed"))
    return output


class ResponseStream:
    """Turns native events into the Responses API's named stream events."""

    def __init__(self, envelope: ResponseObject) -> None:
        self.envelope = envelope
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.reasoning: tuple[int, str, list[str]] | None = None  # index, id, text so far
        self.message: tuple[int, str, list[str]] | None = None

    def _event(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return kind, payload

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        response = self.envelope.make("in_progress", [])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _open(self, item: dict[str, Any]) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
        index = len(self.output)
        self.output.append(item)
        return index, [self._event("response.output_item.added", output_index=index, item=item)]

    def _close_reasoning(self) -> list[tuple[str, dict[str, Any]]]:
        if self.reasoning is None:
            return []
        index, item_id, parts = self.reasoning
        self.reasoning = None
        text = "".join(parts)
        item = self.output[index] = reasoning_item(item_id, text)
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": text}
        return [
            self._event("response.reasoning_summary_text.done", **where, text=text),
            self._event("response.reasoning_summary_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _close_message(self) -> list[tuple[str, dict[str, Any]]]:
        if self.message is None:
            return []
        index, item_id, parts = self.message
        self.message = None
        text = "".join(parts)
        item = self.output[index] = message_item(item_id, text)
        part = item["content"][0]
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=text),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def on(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if event.thinking:
            if self.reasoning is None:
                item_id = _new_id("rs")
                index, added = self._open(reasoning_item(item_id, ""))
                empty = {"type": "summary_text", "text": ""}
                where = {"item_id": item_id, "output_index": index, "summary_index": 0}
                out += added
                out.append(
                    self._event("response.reasoning_summary_part.added", **where, part=empty)
                )
                self.reasoning = (index, item_id, [])
            index, item_id, parts = self.reasoning
            parts.append(event.thinking)
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    delta=event.thinking,
                )
            )
        if event.content:
            out += self._close_reasoning()
            if self.message is None:
                item_id = _new_id("msg")
                index, added = self._open(message_item(item_id, "", status=""))
                out += added
                part = {"type": "output_text", "text": "", "annotations": []}
                where = {"item_id": item_id, "output_index": index, "content_index": 0}
                out.append(self._event("response.content_part.added", **where, part=part))
                self.message = (index, item_id, [])
            index, item_id, parts = self.message
            parts.append(event.content)
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.delta", **where, delta=event.content))
        for call in event.tool_calls:
            out += self._close_reasoning() + self._close_message()
            out += self._call(call)
        if event.done:
            out += self._close_reasoning() + self._close_message()
            if not any(item["type"] in ("message", "function_call") for item in self.output):
                # An answer with no text and no call is still one (empty) message, as whole.
                index, added = self._open(message_item(_new_id("msg"), ""))
                out += added
                item = self.output[index]
                out.append(self._event("response.output_item.done", output_index=index, item=item))
            status = "incomplete" if event.done_reason == "length" else "completed"
            if any(item["type"] == "function_call" for item in self.output):
                status = "completed"
            response = self.envelope.make(status, self.output, event)
            out.append(self._event(f"response.{status}", response=response))
        return out

    def _call(self, call: ToolCall) -> list[tuple[str, dict[str, Any]]]:
        item_id = _new_id("fc")
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        index, out = self._open(call_item(item_id, call, "", "in_progress"))
        where = {"item_id": item_id, "output_index": index}
        done = self.output[index] = call_item(item_id, call, arguments, "completed")
        return [
            *out,
            self._event("response.function_call_arguments.delta", **where, delta=arguments),
            self._event("response.function_call_arguments.done", **where, arguments=arguments),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def failed(self, message: str) -> tuple[str, dict[str, Any]]:
        response = self.envelope.make("failed", self.output)
        response["error"] = {"code": "server_error", "message": message}
        return self._event("response.failed", response=response)


def sse_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + ndjson_line(payload) + b"\n"


async def _stream(events: Iterator[Event], stream: ResponseStream) -> AsyncIterator[bytes]:
    for kind, payload in stream.start():
        yield sse_event(kind, payload)
    try:
        async for event in stream_events(events):
            for kind, payload in stream.on(event):
                yield sse_event(kind, payload)
    except ModelkitError as err:
        yield sse_event(*stream.failed(str(err)))


@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    body = await read_body(request, ResponsesBody)
    if not body.model:
        raise APIError(400, "model is required")
    tools = native_tools(body.tools)
    req = ChatRequest(
        model=body.model,
        messages=native_messages(body),
        tools=tools,
        format=text_format(body),
        options=sampling_options(body, body.max_output_tokens),
        think=think_from_effort(body.reasoning.effort if body.reasoning else ""),
    )
    service = service_of(request)
    events = await service.run_async(await run_in_threadpool(service.chat_job, req))
    envelope = ResponseObject(body)
    if body.stream:
        return StreamingResponse(
            _stream(events, ResponseStream(envelope)),
            media_type="text/event-stream",
            headers=truncation_headers(events),
        )
    merged = await collect(events)
    answer = envelope.make(final_status(merged), whole_output(merged), merged)
    return JSONResponse(answer, headers=truncation_headers(events))
