"""Inference routes: /api/generate, /api/chat, /api/embed, /api/embeddings and /api/ps.

Everything that may fail is checked before the first byte is sent, so errors get a real
status; a failure after streaming started becomes a final ``{"error": ...}`` line.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelkit.errors import ModelkitError
from modelkit.runtime.service import ChatRequest, Event, GenerateRequest, InferenceService
from modelkit.server.body import read_body
from modelkit.server.errors import APIError
from modelkit.server.inference_schemas import ChatBody, EmbedBody, EmbeddingsBody, GenerateBody
from modelkit.server.routes_models import details
from modelkit.server.streaming import ndjson_line

router = APIRouter()

_END = object()


def created_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def service_of(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.modelkit.service
    return service


def metrics(event: Event, started: int) -> dict[str, Any]:
    out: dict[str, Any] = {"total_duration": time.perf_counter_ns() - started}
    if event.load_duration:
        out["load_duration"] = event.load_duration
    if event.stats is not None:
        s = event.stats
        out.update(
            prompt_eval_count=s.prompt_eval_count,
            prompt_eval_duration=s.prompt_eval_duration,
            eval_count=s.eval_count,
            eval_duration=s.eval_duration,
        )
    return out


async def stream_lines(
    events: Iterator[Event], render: Callable[[Event], dict[str, Any]]
) -> AsyncIterator[bytes]:
    """NDJSON lines from a blocking event iterator, advanced in a worker thread; the
    iterator is closed (freeing the model's slot) when the client goes away."""
    try:
        async for event in stream_events(events):
            yield ndjson_line(render(event))
    except ModelkitError as err:
        yield ndjson_line({"error": str(err)})


async def collect(events: Iterator[Event]) -> Event:
    """The whole answer as one final event (for ``stream: false``)."""
    return _merge([event async for event in stream_events(events)])


TRUNCATED_HEADER = "X-Modelkit-Truncated-Tokens"


def truncation_headers(events: Iterator[Event]) -> dict[str, str]:
    """``X-Modelkit-Truncated-Tokens: N`` when the prompt lost N tokens to fit the context
    (Ollama truncates without a word; a modelkit extension)."""
    dropped = getattr(events, "truncated_tokens", 0)
    return {TRUNCATED_HEADER: str(dropped)} if dropped else {}


async def respond(
    events: Iterator[Event], render: Callable[[Event], dict[str, Any]], stream: bool
) -> Response:
    """NDJSON lines as they come, or (``stream: false``) one object for the whole answer."""
    headers = truncation_headers(events)
    if stream:
        lines = stream_lines(events, render)
        return StreamingResponse(lines, media_type="application/x-ndjson", headers=headers)
    return JSONResponse(render(await collect(events)), headers=headers)


async def stream_events(events: Iterator[Event]) -> AsyncIterator[Event]:
    try:
        while True:
            event = await run_in_threadpool(next, events, _END)
            if event is _END:
                return
            assert isinstance(event, Event)
            yield event
    finally:
        with anyio.CancelScope(shield=True):
            close = getattr(events, "close", None)
            if close is not None:
                await run_in_threadpool(close)


def _merge(events: list[Event]) -> Event:
    final = events[-1] if events else Event(done=True)
    return Event(
        content="".join(e.content for e in events),
        thinking="".join(e.thinking for e in events),
        tool_calls=[c for e in events for c in e.tool_calls],
        done=True,
        done_reason=final.done_reason,
        stats=final.stats,
        load_duration=final.load_duration,
        logprobs=[lp for e in events for lp in e.logprobs],
    )


def debug_answer(model: str, empty: dict[str, Any], prompt: str, images: int) -> JSONResponse:
    """``_debug_render_only``: the prompt the request renders to, and no generation."""
    out: dict[str, Any] = {"model": model, "created_at": created_at(), **empty, "done": False}
    out["_debug_info"] = {"rendered_template": prompt, "image_count": images}
    return JSONResponse(out)


def with_logprobs(out: dict[str, Any], event: Event) -> dict[str, Any]:
    """``logprobs`` last, as Ollama orders its response fields, when the request asked."""
    if event.logprobs:
        out["logprobs"] = [lp.to_json() for lp in event.logprobs]
    return out


# -- /api/generate ---------------------------------------------------------------------------


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    started = time.perf_counter_ns()
    body = await read_body(request, GenerateBody)
    if not body.model:
        raise APIError(400, "model is required")
    service = service_of(request)
    if not body.prompt and not body.suffix and not body.raw:
        return await _load_or_unload(
            service, body.model, body.keep_alive, "response", started, body.options
        )
    # The HTTP body and the service request share their field names.
    req = GenerateRequest(**body.model_dump(exclude={"stream", "debug_render_only"}))
    if body.debug_render_only:
        prompt = await run_in_threadpool(service.render_generate, req)
        return debug_answer(body.model, {"response": ""}, prompt, len(req.images))
    events = await service.run_async(await run_in_threadpool(service.generate_job, req))

    def render(event: Event) -> dict[str, Any]:
        out: dict[str, Any] = {"model": body.model, "created_at": created_at()}
        out["response"] = event.content
        if event.thinking:
            out["thinking"] = event.thinking
        out["done"] = event.done
        if event.done:
            out["done_reason"] = event.done_reason
            if event.stats is not None and not body.raw:
                out["context"] = event.stats.context
            out.update(metrics(event, started))
        return with_logprobs(out, event)

    return await respond(events, render, body.stream)


async def _load_or_unload(
    service: InferenceService,
    model: str,
    keep_alive: float | None,
    key: str,
    started: int,
    options: dict[str, Any] | None,
) -> JSONResponse:
    view = await run_in_threadpool(service.view, model)
    out: dict[str, Any] = {"model": model, "created_at": created_at()}
    if key == "message":
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    if keep_alive == 0:
        await run_in_threadpool(service.unload, view)
        out.update(done=True, done_reason="unload")
        return JSONResponse(out)
    waited = await service.load_only_async(model, keep_alive, options)
    out.update(done=True, done_reason="load")
    out.update(total_duration=time.perf_counter_ns() - started, load_duration=waited)
    return JSONResponse(out)


# -- /api/chat -------------------------------------------------------------------------------


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    started = time.perf_counter_ns()
    body = await read_body(request, ChatBody)
    if not body.model:
        raise APIError(400, "model is required")
    service = service_of(request)
    if not body.messages:
        return await _load_or_unload(
            service, body.model, body.keep_alive, "message", started, body.options
        )
    req = ChatRequest(**body.model_dump(exclude={"stream", "debug_render_only"}))
    if body.debug_render_only:
        prompt = await run_in_threadpool(service.render_chat, req)
        images = sum(len(m.get("images") or []) for m in req.messages)
        message = {"message": {"role": "assistant", "content": ""}}
        return debug_answer(body.model, message, prompt, images)
    events = await service.run_async(await run_in_threadpool(service.chat_job, req))

    def render(event: Event) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": event.content}
        if event.thinking:
            message["thinking"] = event.thinking
        if event.tool_calls:
            message["tool_calls"] = [c.to_json() for c in event.tool_calls]
        out: dict[str, Any] = {"model": body.model, "created_at": created_at()}
        out["message"] = message
        out["done"] = event.done
        if event.done:
            out["done_reason"] = event.done_reason
            out.update(metrics(event, started))
        return with_logprobs(out, event)

    return await respond(events, render, body.stream)


# -- embeddings ------------------------------------------------------------------------------


@router.post("/api/embed")
async def embed(request: Request) -> JSONResponse:
    started = time.perf_counter_ns()
    body = await read_body(request, EmbedBody)
    if not body.model:
        raise APIError(400, "model is required")
    inputs = [body.input] if isinstance(body.input, str) else body.input
    if not all(isinstance(i, str) for i in inputs):
        raise APIError(400, "invalid input type")
    texts = [t for t in inputs if t]
    result = await service_of(request).embed_async(
        body.model,
        texts,
        truncate=body.truncate,
        dimensions=body.dimensions,
        options=body.options,
        keep_alive=body.keep_alive,
    )
    return JSONResponse(
        {
            "model": body.model,
            "embeddings": result.embeddings,
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": result.load_duration,
            "prompt_eval_count": result.prompt_eval_count,
        }
    )


@router.post("/api/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    body = await read_body(request, EmbeddingsBody)
    if not body.model:
        raise APIError(400, "model is required")
    if not body.prompt:
        await service_of(request).load_only_async(body.model, body.keep_alive)
        return JSONResponse({"embedding": []})
    result = await service_of(request).embed_async(
        body.model, [body.prompt], options=body.options, keep_alive=body.keep_alive
    )
    return JSONResponse({"embedding": result.embeddings[0]})


# -- /api/ps ---------------------------------------------------------------------------------


@router.get("/api/ps")
def ps(request: Request) -> dict[str, Any]:
    service = service_of(request)
    now = datetime.now().astimezone()
    models = []
    for info in service.loaded():
        view = info.runner.view
        expires = (
            now + timedelta(seconds=info.expires_in)
            if info.expires_in != float("inf")
            else now.replace(year=now.year + 292)
        )
        models.append(
            {
                "name": view.name.display,
                "model": view.name.display,
                "size": info.size,
                "digest": view.stored.digest,
                "details": details(view),
                "expires_at": expires.isoformat(),
                "size_vram": 0,
                "context_length": info.spec.n_ctx,
                # modelkit's own: the model's runner process and the CPU kernels it runs on
                "runner": {
                    "pid": info.runner.model.pid,
                    "rss": info.runner.model.rss(),
                    "kernels": info.runner.model.kernels,
                },
            }
        )
    models.sort(key=lambda m: str(m["expires_at"]), reverse=True)
    return {"models": models}
