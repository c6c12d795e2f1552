"""``POST /api/create``: Ollama's JSON create request built through ``modelkit.build``.

Errors found while planning (bad names, files, quantize types) are HTTP errors; the build then
runs in a worker thread whose statuses (``quantizing F16 model to Q4_K_M`` with bytes done)
stream as NDJSON, an error there ending the stream with one ``{"error": ...}`` line. A create
from safetensors files plans in the stream too (``converting model`` takes a while)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelkit.build import BuildCache, BuildPlan, BuildSpec, execute_build, plan_build
from modelkit.build.quantize import PROGRESS_DIGEST
from modelkit.build.sources import BaseFile, FromRef, HFFolderSource, ResolvedBase
from modelkit.build.spec import LocalFile, LocatedRef
from modelkit.names import ModelName
from modelkit.server.body import model_name, read_body
from modelkit.server.errors import APIError
from modelkit.server.state import ServerState
from modelkit.server.streaming import Emit, job_response
from modelkit.store import Store, is_valid_digest, normalize_digest

router = APIRouter()


class CreateMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str = ""


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = ""
    name: str = ""
    stream: bool = True
    quantize: str = Field(default="", alias="quantize")
    quantization: str = ""
    from_: str = Field(default="", alias="from")
    files: dict[str, str] = Field(default_factory=dict)
    adapters: dict[str, str] = Field(default_factory=dict)
    draft_files: dict[str, str] = Field(default_factory=dict)
    template: str = ""
    license: str | list[str] | None = None
    system: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    messages: list[CreateMessage] = Field(default_factory=list)
    renderer: str = ""
    parser: str = ""
    requires: str = ""

    @model_validator(mode="after")
    def _aliases(self) -> CreateRequest:
        self.model = self.model or self.name
        self.quantize = self.quantize or self.quantization
        return self


def _check_files(files: dict[str, str], *, paths: bool) -> None:
    for key, digest in files.items():
        parts = PurePosixPath(key).parts
        if paths and (
            not key or key.startswith("/") or any(p in (".", "..", "") for p in key.split("/"))
        ):
            raise APIError(400, "file path must be relative")
        if not parts or not digest or not is_valid_digest(digest):
            raise APIError(400, "invalid digest format")


def _blob_files(store: Store, files: dict[str, str]) -> list[BaseFile]:
    out = []
    for key, digest in sorted(files.items()):
        digest = normalize_digest(digest)
        if not store.has_blob(digest):
            raise APIError(400, f'blob "{digest}" not found; upload it with POST /api/blobs first')
        out.append(BaseFile(key, store.blob_path(digest)))
    return out


def _has_safetensors(files: dict[str, str]) -> bool:
    return any(key.endswith(".safetensors") for key in files)


def _uploaded_base(store: Store, files: dict[str, str], progress: Emit | None) -> ResolvedBase:
    """The base of a create from uploaded blobs. Safetensors (any ``*.safetensors`` key) are
    converted as Ollama does: the blobs are linked by their keys into a temporary folder under
    the store, converted (cached by digest under ``.modelkit/converted/``), the folder dropped."""
    blobs = _blob_files(store, files)
    if not _has_safetensors(files):
        return ResolvedBase(description="uploaded files", files=blobs)
    work = store.root / ".modelkit"
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="safetensors-", dir=work))
    try:
        for blob in blobs:
            target = folder / blob.key
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(blob.path, target)
            except OSError:
                shutil.copyfile(blob.path, target)
        known = {key: normalize_digest(digest) for key, digest in files.items()}
        base = HFFolderSource(store, progress).resolve_folder(folder, known=known)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base.description = "uploaded safetensors files (converted to F16 GGUF)"
    return base


def spec_from_request(body: CreateRequest, store: Store, progress: Emit | None = None) -> BuildSpec:
    if body.from_:
        froms = [LocatedRef(FromRef(body.from_, None))]
        base = None
    elif body.files:
        froms = []
        base = _uploaded_base(store, body.files, progress)
    else:
        raise APIError(400, "neither 'from' or 'files' was specified")
    adapters = [LocalFile(f.path, f.key, key=f.key) for f in _blob_files(store, body.adapters)]
    if len(adapters) > 1:
        raise APIError(400, "only one adapter is currently supported")
    drafts = [LocalFile(f.path, f.key, key=f.key) for f in _blob_files(store, body.draft_files)]
    licenses = [body.license] if isinstance(body.license, str) else list(body.license or [])
    return BuildSpec(
        froms=froms,
        base=base,
        adapters=adapters,
        drafts=drafts,
        template=body.template or None,
        system=body.system or None,
        licenses=licenses,
        parameters=body.parameters,
        messages=[(m.role.lower(), m.content) for m in body.messages],
        requires=body.requires.removeprefix("v") or None,
        renderer=body.renderer or None,
        parser=body.parser or None,
        quantize=body.quantize or None,
    )


def _check(body: CreateRequest) -> ModelName:
    """The request's checks that need no work (Ollama's 400s before anything streams)."""
    name = model_name(body.model, "invalid model name")
    _check_files(body.files, paths=True)
    _check_files(body.draft_files, paths=True)
    _check_files(body.adapters, paths=False)
    return name


def _plan(
    state: ServerState, body: CreateRequest, progress: Emit | None = None
) -> tuple[BuildPlan, BuildCache]:
    store = state.store
    cache = BuildCache.for_store(store.root)
    return plan_build(spec_from_request(body, store, progress), store, cache), cache


def _build(
    state: ServerState, name: ModelName, plan: BuildPlan, cache: BuildCache, emit: Emit
) -> None:
    def progress(label: str, done: int, total: int) -> None:
        if not total:
            emit({"status": label})
        else:
            emit({"status": label, "digest": PROGRESS_DIGEST, "total": total, "completed": done})

    result = execute_build(
        plan, name, state.store, cache, noprune=state.settings.noprune, progress=progress
    )
    for layer in result.layers:
        verb = "creating new layer" if layer.status == "new" else "using existing layer"
        emit({"status": f"{verb} {layer.digest}"})
    emit({"status": "writing manifest"})
    emit({"status": "success"})


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = await read_body(request, CreateRequest)
    state: ServerState = request.app.state.modelkit
    name = _check(body)
    if body.files and not body.from_ and _has_safetensors(body.files):
        # a conversion takes a while: it runs in the stream, with its progress, as in Ollama

        def convert_and_build(emit: Emit) -> None:
            plan, cache = _plan(state, body, emit)
            _build(state, name, plan, cache, emit)

        return await job_response(body.stream, convert_and_build)
    plan, cache = await run_in_threadpool(_plan, state, body)
    return await job_response(body.stream, lambda emit: _build(state, name, plan, cache, emit))
