"""``POST /api/pull`` and ``POST /api/push`` (reference §4.2, §4.3, §5.8).

The blocking pull/push runs in a worker thread whose progress callback feeds an asyncio queue,
so Ollama's progress objects (``{"status"[, "digest", "total", "completed"]}``) stream as NDJSON
while it runs. ``stream: false`` waits and answers the final ``{"status": "success"}``. Errors
found before any work (missing or invalid name, push of a model not in the store) are HTTP
errors; errors once streaming has begun end the stream with one ``{"error": …}`` line.

After a pull the model layer is checked with :mod:`modelkit.registry.compat`; a model the
bundled llama.cpp cannot load stays in the store and the pull reports the error instead of
``success``. A client that disconnects does not cancel the transfer: it finishes in the thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, model_validator

from modelkit.errors import ModelkitError, ModelNotFoundError
from modelkit.names import ModelName
from modelkit.registry import ProgressFn, pull, push
from modelkit.registry.compat import check_pulled
from modelkit.server.body import model_name, read_body
from modelkit.server.errors import APIError, error_response, status_for
from modelkit.server.state import ServerState
from modelkit.server.streaming import ndjson_line

router = APIRouter()

SUCCESS: dict[str, Any] = {"status": "success"}


class RegistryRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: bool = True

    @model_validator(mode="after")
    def _alias(self) -> RegistryRequest:
        self.model = self.model or self.name
        return self


def _parse(body: RegistryRequest) -> ModelName:
    if not body.model:
        raise APIError(400, "model is required")
    return model_name(body.model, f'name "{body.model}" is invalid')


def _pull_job(state: ServerState, name: ModelName, insecure: bool) -> Callable[[ProgressFn], None]:
    def job(emit: ProgressFn) -> None:
        def forward(event: dict[str, Any]) -> None:
            if event != SUCCESS:  # success only once the compatibility check passed
                emit(event)

        stored = pull(
            state.store,
            name,
            insecure=insecure,
            progress=forward,
            prune=not state.settings.noprune,
        )
        check_pulled(state.store, stored)
        emit(SUCCESS)

    return job


def _push_job(state: ServerState, name: ModelName, insecure: bool) -> Callable[[ProgressFn], None]:
    def job(emit: ProgressFn) -> None:
        push(state.store, name, insecure=insecure, progress=emit)

    return job


def _error_text(err: BaseException) -> str:
    return str(err) or type(err).__name__


async def _run(body: RegistryRequest, job: Callable[[ProgressFn], None]) -> Response:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, dict(event))

    def work() -> None:
        try:
            job(emit)
        finally:
            loop.call_soon_threadsafe(events.put_nowait, None)

    future = loop.run_in_executor(None, work)
    if not body.stream:
        try:
            await future
        except ModelkitError as err:
            return error_response(status_for(err), str(err))
        except Exception as err:
            return error_response(500, _error_text(err))
        return JSONResponse(SUCCESS)

    async def lines() -> AsyncIterator[bytes]:
        while (event := await events.get()) is not None:
            yield ndjson_line(event)
        try:
            await future
        except Exception as err:
            yield ndjson_line({"error": _error_text(err)})

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/api/pull")
async def pull_route(request: Request) -> Response:
    body = await read_body(request, RegistryRequest)
    name = _parse(body)
    state: ServerState = request.app.state.modelkit
    return await _run(body, _pull_job(state, name, body.insecure))


@router.post("/api/push")
async def push_route(request: Request) -> Response:
    body = await read_body(request, RegistryRequest)
    name = _parse(body)
    state: ServerState = request.app.state.modelkit
    try:
        state.store.read_manifest(state.store.resolve_name(name))
    except ModelNotFoundError:
        raise APIError(404, f'model "{body.model}" not found') from None
    return await _run(body, _push_job(state, name, body.insecure))
