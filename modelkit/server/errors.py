"""Turning domain errors into Ollama's HTTP errors: ``{"error": "..."}`` with the right status."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from modelkit.errors import (
    BuildError,
    DigestMismatchError,
    ModelfileError,
    ModelkitError,
    ModelNameError,
    ModelNotFoundError,
    RequestError,
    TemplateError,
)
from modelkit.runtime.options import OptionTypeError
from modelkit.runtime.scheduler import QUEUE_FULL_MESSAGE, QueueFullError


class APIError(Exception):
    """An error a route raises on purpose, with its status and Ollama's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def status_for(err: ModelkitError) -> int:
    if isinstance(err, ModelNotFoundError):
        return 404
    if isinstance(
        err,
        ModelNameError
        | ModelfileError
        | BuildError
        | DigestMismatchError
        | RequestError
        | OptionTypeError
        | TemplateError,
    ):
        return 400
    return 500


async def handle_api_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, APIError)
    return error_response(err.status, err.message)


async def handle_domain_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, ModelkitError)
    return error_response(status_for(err), str(err))


async def handle_queue_full(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, QueueFullError)
    return error_response(503, QUEUE_FULL_MESSAGE)
