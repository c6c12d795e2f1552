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

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 32 * 1024 * 1024  # JSON bodies; blobs are streamed, not read here


async def read_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(413, "request body too large")
    if not raw.strip():
        raise APIError(400, "missing request body")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise APIError(400, f"invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise APIError(400, "json: cannot unmarshal a non-object into the request")
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
