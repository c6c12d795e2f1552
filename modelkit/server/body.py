"""Reading request bodies as Ollama does: empty → ``missing request body``, bad JSON or wrong
types → 400 with the decoder's message, unknown fields ignored."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from modelkit.errors import ModelNameError
from modelkit.names import ModelName
from modelkit.server.errors import APIError
from modelkit.server.metrics import note_model

M = TypeVar("M", bound=BaseModel)


def _too_large(limit: int) -> str:
    return f"request body too large: over {limit} bytes (MODELKIT_MAX_BODY_BYTES)"


async def read_body(request: Request, model: type[M]) -> M:
    limit: int = request.app.state.modelkit.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before it is read
        raise APIError(413, _too_large(limit))
    buffer = bytearray()
    async for part in request.stream():
        buffer += part
        if len(buffer) > limit:
            raise APIError(413, _too_large(limit))
    raw = bytes(buffer)
    if not raw.strip():
        raise APIError(400, "missing request body")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise APIError(400, f"invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise APIError(400, "json: cannot unmarshal a non-object into the request")
    name = data.get("model")
    if isinstance(name, str) and name:
        note_model(request.scope, name)  # the request counter's model label
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "value_error":  # our validators word their own messages
            raise APIError(400, str(first["msg"]).removeprefix("Value error, ")) from None
        where = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"invalid value for {where}: {first['msg']}") from None


def model_name(text: str, invalid: str) -> ModelName:
    """``text`` as a model name, or a 400 with the route's own wording for a bad one."""
    try:
        return ModelName.parse(text)
    except ModelNameError:
        raise APIError(400, invalid) from None
