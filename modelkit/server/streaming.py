"""NDJSON streaming as Ollama does it: one compact JSON object per line, flushed per object;
and long jobs (create, pull, push) run in a thread whose progress events stream that way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelkit.errors import ModelkitError
from modelkit.server.errors import error_response, status_for

Emit = Callable[[dict[str, Any]], None]
"""How a job reports a progress event (from its worker thread)."""


def ndjson_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def ndjson_lines(objects: Iterable[dict[str, Any]]) -> AsyncIterator[bytes]:
    for obj in objects:
        yield ndjson_line(obj)


def _error_text(err: BaseException) -> str:
    return str(err) or type(err).__name__


async def job_response(stream: bool, job: Callable[[Emit], None]) -> Response:
    """Run ``job`` in a worker thread: its events as NDJSON while it runs (a failure ends the
    stream with one ``{"error": ...}`` line, as Ollama's does), or, with ``stream`` off, only
    its last event (``{"status": "success"}`` when it sent none) or an HTTP error."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    last: list[dict[str, Any]] = [{"status": "success"}]

    def emit(event: dict[str, Any]) -> None:
        last[0] = dict(event)
        loop.call_soon_threadsafe(events.put_nowait, last[0])

    def work() -> None:
        try:
            job(emit)
        finally:
            loop.call_soon_threadsafe(events.put_nowait, None)

    future = loop.run_in_executor(None, work)
    if not stream:
        try:
            await future
        except ModelkitError as err:
            return error_response(status_for(err), str(err))
        except Exception as err:
            return error_response(500, _error_text(err))
        return JSONResponse(last[0])

    async def lines() -> AsyncIterator[bytes]:
        while (event := await events.get()) is not None:
            yield ndjson_line(event)
        try:
            await future
        except Exception as err:
            yield ndjson_line({"error": _error_text(err)})

    return StreamingResponse(lines(), media_type="application/x-ndjson")
