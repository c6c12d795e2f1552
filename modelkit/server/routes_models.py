"""Model management routes: tags, show, copy, delete, blobs — the store over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from modelkit.build.show import show_capabilities, show_modelfile, show_parameters
from modelkit.errors import DigestMismatchError, ModelNotFoundError
from modelkit.server.body import model_name, read_body
from modelkit.server.errors import APIError
from modelkit.server.schemas import CopyRequest, ModelRequest, ShowRequest
from modelkit.server.state import ServerState
from modelkit.store import (
    BlobRef,
    GGUFValue,
    ModelView,
    StoredManifest,
    is_valid_digest,
    normalize_digest,
    read_gguf_info,
    view_model,
)

router = APIRouter()


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.modelkit
    return state


def details(view: ModelView) -> dict[str, Any]:
    config = view.config
    return {
        "parent_model": view.parent_model,
        "format": config.model_format or "gguf",
        "family": config.model_family,
        "families": config.model_families,
        "parameter_size": config.model_type,
        "quantization_level": config.file_type,
    }


def model_entry(view: ModelView) -> dict[str, Any]:
    stored = view.stored
    return {
        "name": stored.name.display,
        "model": stored.name.display,
        "modified_at": stored.modified.astimezone().isoformat(),
        "size": stored.size,
        "digest": stored.digest,
        "details": details(view),
    }


def _view(state: ServerState, name: str) -> ModelView:
    return state.service.view(name)  # ModelNotFoundError → 404 "model '<name>' not found"


@router.get("/api/tags")
@router.head("/api/tags")
def tags(request: Request) -> dict[str, Any]:
    state = _state(request)
    entries: list[tuple[StoredManifest, dict[str, Any]]] = []
    for stored in state.store.list_models():
        try:
            view = view_model(state.store, stored.name)
        except ModelNotFoundError:
            continue  # deleted while we listed
        entries.append((stored, model_entry(view)))
    entries.sort(key=lambda e: e[0].modified, reverse=True)
    return {"models": [entry for _, entry in entries]}


def _jsonable(value: GGUFValue) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def gguf_kv(path: Path, verbose: bool, *, hidden: tuple[str, ...] = ()) -> dict[str, Any]:
    """A GGUF's key/values as ``show`` lists them, sorted, plus ``general.parameter_count``."""
    # Ollama elides arrays longer than 5 unless verbose; only decode what is shown.
    limit = 1 << 62 if verbose else 5
    info = read_gguf_info(path, max_array_len=limit)
    out: dict[str, Any] = {}
    for key, value in info.metadata.items():
        if key not in hidden:
            out[key] = _jsonable(value)
    for key, length in info.array_lengths.items():
        if length > limit:
            out[key] = []
    out["general.parameter_count"] = info.parameter_count
    return dict(sorted(out.items()))


def model_info(state: ServerState, view: ModelView, verbose: bool) -> dict[str, Any]:
    if view.model is None:
        return {}
    path = state.store.blob_path(view.model.digest)
    return gguf_kv(path, verbose, hidden=("general.name", "tokenizer.chat_template"))


def projector_info(state: ServerState, view: ModelView, verbose: bool) -> dict[str, Any] | None:
    """The first projector's key/values; Ollama hides nothing here (not even general.name)."""
    if not view.projectors:
        return None
    return gguf_kv(state.store.blob_path(view.projectors[0].digest), verbose)


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await read_body(request, ShowRequest)
    if not body.model:
        raise APIError(400, "model is required")
    state = _state(request)
    view = _view(state, body.model)
    # The template modelkit really uses: the TEMPLATE layer, else the GGUF's own chat
    # template (Ollama would fall back to "{{ .Prompt }}" here).
    template = state.service.template_for(view)  # cached per manifest digest
    capabilities = show_capabilities(view, template.capabilities)
    response: dict[str, Any] = {
        "license": "\n".join(view.licenses),
        "modelfile": show_modelfile(view, state.store),
        "parameters": show_parameters(view.parameters),
        "template": template.text,
        "system": body.system or view.system or "",
        "details": details(view),
        "messages": view.messages,
        "model_info": model_info(state, view, body.verbose),
        "capabilities": capabilities,
        "modified_at": view.stored.modified.astimezone().isoformat(),
    }
    projector = projector_info(state, view, body.verbose)
    if projector is not None:  # omitempty, as in Ollama
        response["projector_info"] = projector
    if view.config.requires:
        response["requires"] = view.config.requires
    return response


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    body = await read_body(request, CopyRequest)
    state = _state(request)
    src = model_name(body.source, f'source "{body.source}" is invalid')
    dst = model_name(body.destination, f'destination "{body.destination}" is invalid')
    try:
        state.store.copy(state.store.resolve_name(src), dst)
    except ModelNotFoundError:
        raise APIError(404, f'model "{body.source}" not found') from None
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    body = await read_body(request, ModelRequest)
    state = _state(request)
    name = model_name(body.model, f'name "{body.model}" is invalid')
    try:
        state.store.delete(state.store.resolve_name(name))
    except ModelNotFoundError:
        raise APIError(404, f"model '{body.model}' not found") from None
    return Response(status_code=200)


def _checked_digest(digest: str) -> str:
    if not is_valid_digest(digest):
        raise APIError(400, "invalid digest format")
    return normalize_digest(digest)


@router.head("/api/blobs/{digest}")
def head_blob(request: Request, digest: str) -> Response:
    checked = _checked_digest(digest)
    if not _state(request).store.has_blob(checked):
        raise APIError(404, f'blob "{digest}" not found')
    return Response(status_code=200)


class _BodyAborted(Exception):
    """The client went away before the whole blob arrived."""


@router.post("/api/blobs/{digest}")
async def create_blob(request: Request, digest: str) -> Response:
    checked = _checked_digest(digest)
    store = _state(request).store
    if store.has_blob(checked):
        return Response(status_code=200)  # Ollama answers without reading the body

    # The store's writer is synchronous (hash, fsync, rename); it runs in a worker thread
    # fed through a small queue, so a multi-GB upload is never held in memory.
    feed: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
    loop = asyncio.get_running_loop()

    def chunks() -> Iterator[bytes]:
        while True:
            item = feed.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def write() -> BlobRef:
        with store.writing():
            return store.write_stream(chunks(), expected_digest=checked)

    writer = loop.run_in_executor(None, write)
    try:
        async for chunk in request.stream():
            if chunk:
                await loop.run_in_executor(None, feed.put, chunk)
        await loop.run_in_executor(None, feed.put, None)
    except BaseException:
        await loop.run_in_executor(None, feed.put, _BodyAborted())
        with contextlib.suppress(BaseException):
            await writer
        raise
    try:
        await writer
    except DigestMismatchError as err:
        raise APIError(400, f'digest mismatch, expected "{checked}", got "{err.got}"') from None
    return Response(status_code=201)
