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

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, model_validator

from modelkit.errors import ModelNotFoundError
from modelkit.names import ModelName
from modelkit.registry import ProgressFn, pull, push
from modelkit.registry.compat import check_pulled
from modelkit.server.body import model_name, read_body
from modelkit.server.errors import APIError
from modelkit.server.state import ServerState
from modelkit.server.streaming import job_response

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


@router.post("/api/pull")
async def pull_route(request: Request) -> Response:
    body = await read_body(request, RegistryRequest)
    name = _parse(body)
    state: ServerState = request.app.state.modelkit
    return await job_response(body.stream, _pull_job(state, name, body.insecure))


@router.post("/api/push")
async def push_route(request: Request) -> Response:
    body = await read_body(request, RegistryRequest)
    name = _parse(body)
    state: ServerState = request.app.state.modelkit
    try:
        state.store.read_manifest(state.store.resolve_name(name))
    except ModelNotFoundError:
        raise APIError(404, f'model "{body.model}" not found') from None
    return await job_response(body.stream, _push_job(state, name, body.insecure))
