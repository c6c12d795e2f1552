"""The server's OpenAPI document (``GET /openapi.json``), completed by hand.

The routes read their JSON bodies themselves (:func:`modelkit.server.body.read_body`), to
answer as Ollama does, so FastAPI sees no request bodies and knows nothing of what comes back.
:func:`complete_openapi` takes FastAPI's document and adds, from the small tables below:

* each body route's ``requestBody``: the JSON schema of the pydantic model the route reads
  (its ``$defs`` moved to ``components/schemas``);
* each route's 200 answer: JSON, NDJSON (``application/x-ndjson``: the schema describes the
  lines read as an array, one object a line) or server-sent events (``text/event-stream``:
  the schema describes one event);
* the errors the server really gives, in Ollama's shape ``{"error": "..."}``, or OpenAI's
  ``{"error": {"message", "type", "param", "code"}}`` from the ``/v1`` routes' own handlers.
  Errors from middleware (401 without a valid API key, 429 past the rate limit) are Ollama's
  everywhere. FastAPI's 422 is replaced: a bad path parameter is a 400 here.

``tests/server/test_fuzz.py`` and ``benchmarks/fuzz.py`` fuzz a real server from this document
with schemathesis, so it must stay true to what the routes answer.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modelkit.server.auth import required_scope
from modelkit.server.inference_schemas import ChatBody, EmbedBody, EmbeddingsBody, GenerateBody
from modelkit.server.routes_create import CreateRequest
from modelkit.server.routes_openai import ChatCompletionBody, CompletionBody
from modelkit.server.routes_openai import EmbeddingsBody as OpenAIEmbeddingsBody
from modelkit.server.routes_registry import RegistryRequest
from modelkit.server.routes_responses import ResponsesBody
from modelkit.server.schemas import CopyRequest, ModelRequest, ShowRequest

__all__ = ["BODIES", "complete_openapi", "openapi_document"]

DESCRIPTION = (
    "Ollama's HTTP API, and the OpenAI-compatible /v1 routes, as modelkit serves them. Bodies"
    " are JSON; unknown fields are ignored. Streams are NDJSON (Ollama's routes) or server-sent"
    " events (/v1)."
)

JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
TEXT = "text/plain"

Schema = dict[str, Any]

BODIES: dict[tuple[str, str], tuple[str, type[BaseModel]]] = {
    ("post", "/api/show"): ("ShowRequest", ShowRequest),
    ("post", "/api/copy"): ("CopyRequest", CopyRequest),
    ("delete", "/api/delete"): ("ModelRequest", ModelRequest),
    ("post", "/api/create"): ("CreateRequest", CreateRequest),
    ("post", "/api/generate"): ("GenerateRequest", GenerateBody),
    ("post", "/api/chat"): ("ChatRequest", ChatBody),
    ("post", "/api/embed"): ("EmbedRequest", EmbedBody),
    ("post", "/api/embeddings"): ("EmbeddingsRequest", EmbeddingsBody),
    ("post", "/api/pull"): ("PullRequest", RegistryRequest),
    ("post", "/api/push"): ("PushRequest", RegistryRequest),
    ("post", "/v1/chat/completions"): ("ChatCompletionRequest", ChatCompletionBody),
    ("post", "/v1/completions"): ("CompletionRequest", CompletionBody),
    ("post", "/v1/embeddings"): ("OpenAIEmbeddingsRequest", OpenAIEmbeddingsBody),
    ("post", "/v1/responses"): ("ResponsesRequest", ResponsesBody),
}
"""(method, path) → (component name, the pydantic model its route passes to ``read_body``)."""

INFERENCE = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
    }
)
"""Routes that queue for a model: 503 when its queue is full."""


# -- response shapes -------------------------------------------------------------------------


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object"}
ARRAY: Schema = {"type": "array"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}

OLLAMA_ERROR = _object({"error": STRING})
OPENAI_ERROR = _object(
    {
        "error": _object(
            {
                "message": STRING,
                "type": STRING,
                "param": NULLABLE_STRING,
                "code": NULLABLE_STRING,
            }
        )
    }
)
STATUS = _object({"status": STRING})
"""Progress and outcome of create, pull and push; each may end with an ``{"error"}`` line."""

DETAILS = _object(
    {
        "format": STRING,
        "family": STRING,
        "families": {"type": ["array", "null"], "items": STRING},
        "parameter_size": STRING,
        "quantization_level": STRING,
    },
    {"parent_model": STRING},
)
MODEL_ENTRY = _object(
    {
        "name": STRING,
        "model": STRING,
        "modified_at": STRING,
        "size": INTEGER,
        "digest": STRING,
        "details": DETAILS,
    }
)
METRICS: dict[str, Schema] = {
    name: INTEGER
    for name in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    )
}
ANSWER: dict[str, Schema] = {"model": STRING, "created_at": STRING, "done": BOOLEAN}
ANSWER_MORE: dict[str, Schema] = {
    "done_reason": STRING,
    "thinking": STRING,
    "logprobs": {"type": "array", "items": OBJECT},
    "_debug_info": OBJECT,
    **METRICS,
}
GENERATE = _object(
    {**ANSWER, "response": STRING},
    {**ANSWER_MORE, "context": {"type": "array", "items": INTEGER}},
)
CHAT_MESSAGE = _object(
    {"role": STRING, "content": STRING},
    {"thinking": STRING, "tool_calls": {"type": "array", "items": OBJECT}},
)
CHAT = _object({**ANSWER, "message": CHAT_MESSAGE}, ANSWER_MORE)
VECTOR: Schema = {"type": "array", "items": NUMBER}
EMBED = _object(
    {
        "model": STRING,
        "embeddings": {"type": "array", "items": VECTOR},
        "total_duration": INTEGER,
        "load_duration": INTEGER,
        "prompt_eval_count": INTEGER,
    }
)
PS_ENTRY = _object(
    {
        "name": STRING,
        "model": STRING,
        "size": INTEGER,
        "digest": STRING,
        "details": DETAILS,
        "expires_at": STRING,
        "size_vram": INTEGER,
        "context_length": INTEGER,
    },
    {"runner": OBJECT},
)
PS = _object({"models": {"type": "array", "items": PS_ENTRY}})
SHOW = _object(
    {
        "license": STRING,
        "modelfile": STRING,
        "parameters": STRING,
        "template": STRING,
        "system": STRING,
        "details": DETAILS,
        "messages": {"type": "array", "items": OBJECT},
        "model_info": OBJECT,
        "capabilities": {"type": "array", "items": STRING},
        "modified_at": STRING,
    },
    {"requires": STRING},
)
USAGE = _object({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER})
COMPLETION_HEAD: dict[str, Schema] = {
    "id": STRING,
    "object": STRING,
    "created": INTEGER,
    "model": STRING,
    "choices": {"type": "array", "items": OBJECT},
}
COMPLETION = _object(COMPLETION_HEAD, {"usage": USAGE, "system_fingerprint": STRING})
MODEL_OBJECT = _object({"id": STRING, "object": STRING, "created": INTEGER, "owned_by": STRING})
MODEL_LIST = _object({"object": STRING, "data": {"type": ["array", "null"], "items": MODEL_OBJECT}})
OPENAI_EMBEDDINGS = _object(
    {
        "object": STRING,
        "data": {
            "type": "array",
            "items": _object(
                {
                    "object": STRING,
                    "embedding": {"anyOf": [VECTOR, STRING]},
                    "index": INTEGER,
                }
            ),
        },
        "model": STRING,
        "usage": _object({"prompt_tokens": INTEGER, "total_tokens": INTEGER}),
    }
)
RESPONSE_OBJECT = _object(
    {
        "id": STRING,
        "object": STRING,
        "created_at": INTEGER,
        "status": STRING,
        "model": STRING,
        "output": {"type": "array", "items": OBJECT},
    }
)
SSE_EVENT = _object({"data": STRING}, {"event": STRING, "id": STRING})
"""One server-sent event: ``data`` a JSON object, or ``[DONE]`` closing a /v1 stream."""


def _json(schema: Schema) -> Schema:
    return {JSON: {"schema": schema}}


def _ndjson(line: Schema) -> Schema:
    return {NDJSON: {"schema": {"type": "array", "items": {"anyOf": [line, OLLAMA_ERROR]}}}}


def _sse() -> Schema:
    return {SSE: {"schema": SSE_EVENT}}


OK: dict[tuple[str, str], tuple[str, Schema | None]] = {
    ("get", "/"): ("Ollama is running", {TEXT: {"schema": STRING}}),
    ("get", "/api/version"): ("Ollama's version", _json(_object({"version": STRING}))),
    ("get", "/api/tags"): (
        "Models in the store",
        _json(_object({"models": {"type": "array", "items": MODEL_ENTRY}})),
    ),
    ("post", "/api/show"): ("The model", _json(SHOW)),
    ("post", "/api/copy"): ("Copied", None),
    ("delete", "/api/delete"): ("Deleted", None),
    ("head", "/api/blobs/{digest}"): ("The blob exists", None),
    ("post", "/api/blobs/{digest}"): ("The blob exists already", None),
    ("post", "/api/create"): (
        "Progress; the last line says success",
        {**_json(STATUS), **_ndjson(STATUS)},
    ),
    ("post", "/api/generate"): (
        "The answer, whole or streamed",
        {**_json(GENERATE), **_ndjson(GENERATE)},
    ),
    ("post", "/api/chat"): ("The answer, whole or streamed", {**_json(CHAT), **_ndjson(CHAT)}),
    ("post", "/api/embed"): ("Embeddings", _json(EMBED)),
    ("post", "/api/embeddings"): ("An embedding", _json(_object({"embedding": VECTOR}))),
    ("get", "/api/ps"): ("Loaded models", _json(PS)),
    ("post", "/api/pull"): (
        "Progress; the last line says success",
        {**_json(STATUS), **_ndjson(STATUS)},
    ),
    ("post", "/api/push"): (
        "Progress; the last line says success",
        {**_json(STATUS), **_ndjson(STATUS)},
    ),
    ("post", "/v1/chat/completions"): (
        "The completion, whole or streamed",
        {**_json(COMPLETION), **_sse()},
    ),
    ("post", "/v1/completions"): (
        "The completion, whole or streamed",
        {**_json(COMPLETION), **_sse()},
    ),
    ("get", "/v1/models"): ("Models in the store", _json(MODEL_LIST)),
    ("get", "/v1/models/{model}"): ("The model", _json(MODEL_OBJECT)),
    ("post", "/v1/embeddings"): ("Embeddings", _json(OPENAI_EMBEDDINGS)),
    ("post", "/v1/responses"): (
        "The response, whole or streamed",
        {**_json(RESPONSE_OBJECT), **_sse()},
    ),
    ("get", "/healthz"): ("The process answers", _json(STATUS)),
    ("get", "/readyz"): ("Every preloaded model is loaded", _json(STATUS)),
    ("get", "/metrics"): ("Prometheus metrics", {TEXT: {"schema": STRING}}),
}
"""(method, path) → (description, content) of the 200 answer; HEAD is GET's without a body."""

CREATED: dict[tuple[str, str], str] = {("post", "/api/blobs/{digest}"): "The blob was stored"}

ERROR_TEXTS = {
    400: "Bad request: missing or invalid body, field or name",
    401: "No valid API key (when keys are configured)",
    404: "The model (or blob) does not exist",
    413: "The body is over MODELKIT_MAX_BODY_BYTES",
    429: "Over MODELKIT_MAX_REQUESTS_PER_MINUTE",
    500: "The model or the server failed",
    503: "The model's queue is full",
}


def _errors(method: str, path: str) -> dict[int, str]:
    """The error statuses (and their descriptions) the route may answer."""
    statuses = [500]
    if required_scope(path) is not None:  # probes pass the key guard and the rate limit
        statuses += [401, 429]
    if (method, path) in BODIES:
        statuses += [400, 404, 413]
    elif "{" in path:
        statuses += [400, 404]
    if path in INFERENCE:
        statuses.append(503)
    return {status: ERROR_TEXTS[status] for status in sorted(set(statuses))}


def _responses(method: str, path: str) -> dict[str, Any]:
    key = (method, path)
    description, content = OK.get(key) or OK.get(("get", path), ("OK", None))
    ok: dict[str, Any] = {"description": description}
    if content is not None and method != "head":
        ok["content"] = copy.deepcopy(content)
    responses: dict[str, Any] = {"200": ok}
    if key in CREATED:
        responses["201"] = {"description": CREATED[key]}
    for status, text in _errors(method, path).items():
        # the /v1 routes' handlers answer OpenAI's shape; middleware always answers Ollama's
        openai = path.startswith("/v1/") and status not in (401, 429)
        shape = OPENAI_ERROR if openai else OLLAMA_ERROR
        responses[str(status)] = {"description": text, "content": _json(copy.deepcopy(shape))}
    if "{" in path:
        # A parameter that makes the path match no route (a line break in a /v1/models/ name,
        # where Starlette's path convertor stops; "/" in a digest) gets the plain-text 404.
        responses["404"]["description"] += "; 404 page not found: the path matches no route"
        responses["404"]["content"][TEXT] = {"schema": {"const": "404 page not found"}}
    if path == "/readyz":
        responses["503"] = {"description": "Not ready: why", "content": _json(OLLAMA_ERROR)}
    return responses


def _add_schema(components: dict[str, Schema], name: str, schema: Schema) -> None:
    if components.setdefault(name, schema) != schema:
        raise ValueError(f"two different OpenAPI schemas named {name!r}")


def _body_schema(components: dict[str, Schema], name: str, model: type[BaseModel]) -> Schema:
    """``model``'s JSON schema as ``components/schemas/<name>``; a ``$ref`` to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        _add_schema(components, def_name, definition)
    schema["title"] = name
    _add_schema(components, name, schema)
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for ``app``, with request bodies and responses filled in."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=DESCRIPTION,
        routes=app.routes,
    )
    components: dict[str, Schema] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # 422s are 400s here
        components.pop(name, None)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            body = BODIES.get((method, path))
            if body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {JSON: {"schema": _body_schema(components, *body)}},
                }
            operation["responses"] = _responses(method, path)
    if not components:
        del document["components"]
    return document


def complete_openapi(app: FastAPI) -> dict[str, Any]:
    """What ``app.openapi()`` answers: the completed document, built once per app."""
    if app.openapi_schema is None:
        app.openapi_schema = openapi_document(app)
    return app.openapi_schema
