"""``POST /api/create``: Ollama's JSON create request built through ``modelkit.build``."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelkit.build import BuildCache, BuildSpec, execute_build, plan_build
from modelkit.build.sources import BaseFile, FromRef, ResolvedBase
from modelkit.build.spec import LocalFile, LocatedRef
from modelkit.server.body import model_name, read_body
from modelkit.server.errors import APIError
from modelkit.server.state import ServerState
from modelkit.server.streaming import ndjson_lines
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


def spec_from_request(body: CreateRequest, store: Store) -> BuildSpec:
    if body.from_:
        froms = [LocatedRef(FromRef(body.from_, None))]
        base = None
    elif body.files:
        froms = []
        files = _blob_files(store, body.files)
        base = ResolvedBase(description="uploaded files", files=files)
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
    )


def _create(state: ServerState, body: CreateRequest) -> list[dict[str, Any]]:
    name = model_name(body.model, "invalid model name")
    if body.quantize:
        raise APIError(400, "quantization is not supported yet; quantize the GGUF beforehand")
    _check_files(body.files, paths=True)
    _check_files(body.draft_files, paths=True)
    _check_files(body.adapters, paths=False)
    store = state.store
    cache = BuildCache.for_store(store.root)
    plan = plan_build(spec_from_request(body, store), store, cache)
    result = execute_build(plan, name, store, cache, noprune=state.settings.noprune)
    statuses: list[dict[str, Any]] = []
    for layer in result.layers:
        verb = "creating new layer" if layer.status == "new" else "using existing layer"
        statuses.append({"status": f"{verb} {layer.digest}"})
    statuses += [{"status": "writing manifest"}, {"status": "success"}]
    return statuses


@router.post("/api/create")
async def create(request: Request) -> Response:
    body = await read_body(request, CreateRequest)
    state: ServerState = request.app.state.modelkit
    statuses = await run_in_threadpool(_create, state, body)
    if not body.stream:
        return JSONResponse(statuses[-1])
    return StreamingResponse(ndjson_lines(statuses), media_type="application/x-ndjson")
