"""The Ollama HTTP API as a FastAPI app: routes, error mapping, Ollama's 404/405 texts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from modelkit import __version__
from modelkit.config import Settings
from modelkit.errors import ModelkitError
from modelkit.runtime.scheduler import QueueFullError
from modelkit.server import (
    routes_create,
    routes_inference,
    routes_models,
    routes_openai,
    routes_responses,
)
from modelkit.server.auth import ApiKeyGuard, KeyRing
from modelkit.server.errors import (
    APIError,
    error_response,
    handle_api_error,
    handle_domain_error,
    handle_queue_full,
)
from modelkit.server.limits import RateLimit
from modelkit.server.metrics import Metrics, RequestMetrics
from modelkit.server.openapi import complete_openapi
from modelkit.server.routes_health import Readiness, health_router
from modelkit.server.routes_registry import router as registry_router
from modelkit.server.security import (
    ALLOWED_HEADERS,
    EXTENSION_ORIGINS,
    HostGuard,
    is_loopback_host,
    origin_regex,
)
from modelkit.server.state import ServerState


async def _http_error(_: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    if err.status_code == 404:
        return PlainTextResponse("404 page not found", status_code=404)
    if err.status_code == 405:
        return PlainTextResponse("405 method not allowed", status_code=405)
    return error_response(err.status_code, str(err.detail))


async def _validation_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    return error_response(400, str(err.errors()[0].get("msg", "invalid request")))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    state = ServerState.create(settings)
    metrics = Metrics(state.service)
    state.service.observer = metrics
    readiness = Readiness(state.service, settings.preload)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await readiness.start()  # preloads run in the background: /healthz answers at once
        yield
        readiness.stop()
        state.service.shutdown()  # unload every model, as Ollama does on SIGTERM

    app = FastAPI(
        title="modelkit", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.modelkit = state
    if settings.max_requests_per_minute:  # inside the key guard: it counts per key
        app.add_middleware(RateLimit, per_minute=settings.max_requests_per_minute)
    keys = KeyRing.from_settings(settings.api_keys, settings.api_keys_file)
    if keys:  # inside CORS, so that a 401 carries its headers and preflights pass
        app.add_middleware(ApiKeyGuard, keys=keys, metrics_public=settings.metrics_public)
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=origin_regex((*settings.origins, *EXTENSION_ORIGINS)),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
    )
    if is_loopback_host(settings.host.host):
        app.add_middleware(HostGuard)
    # Outermost: counts every request, the Host guard's 403s included.
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_exception_handler(APIError, handle_api_error)
    app.add_exception_handler(QueueFullError, handle_queue_full)
    app.add_exception_handler(ModelkitError, handle_domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/")
    @app.head("/")
    def root() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")

    @app.get("/api/version")
    @app.head("/api/version")
    def version() -> JSONResponse:
        # Clients compare this with the Ollama release they need; modelkit's own version
        # travels in a header beside it.
        return JSONResponse(
            {"version": settings.ollama_version}, headers={"X-Modelkit-Version": __version__}
        )

    app.include_router(routes_models.router)
    app.include_router(routes_create.router)
    app.include_router(routes_inference.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_responses.router)
    app.include_router(registry_router)
    app.include_router(health_router(readiness, metrics))
    app.openapi = lambda: complete_openapi(app)  # type: ignore[method-assign]
    return app
