"""Probes and metrics for orchestrators: ``/healthz`` (the process answers), ``/readyz`` (the
preloaded models are loaded) and ``/metrics`` (Prometheus); and the preloading itself.

Readiness rule: ready once the app has started and *every* model named for preload
(``--preload``, ``MODELKIT_PRELOAD``) is loaded in a live runner right now, as
``/api/ps`` would show it. A model that failed to preload keeps ``/readyz`` at 503 with the
error (no retry: a request for the model loads it, and then it is ready); a preloaded model
that is later unloaded (``keep_alive: 0``, evicted for another, its runner crashed) makes
``/readyz`` 503 again until something loads it again. Preloads are loaded one after the
other with keep-alive forever (Ollama's ``keep_alive: -1``).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from modelkit.errors import ModelNameError
from modelkit.names import ModelName
from modelkit.runtime.service import InferenceService
from modelkit.server.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

FOREVER = -1.0
"""The keep-alive of preloaded models: negative is forever."""


def _display(name: str) -> str:
    try:
        return ModelName.parse(name).display
    except ModelNameError:
        return name


class Readiness:
    """Preloads the configured models in the background and says what is not ready."""

    def __init__(self, service: InferenceService, preload: tuple[str, ...]) -> None:
        self.service = service
        self.preload = preload
        self.started = False
        self.errors: dict[str, str] = {}
        self._pending: set[str] = set(preload)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Called at app start-up: begins the preloads without waiting for them."""
        self.started = True
        if self.preload:
            self._task = asyncio.create_task(self._preload(), name="modelkit-preload")

    def stop(self) -> None:
        """Called at shutdown: no more preloads (one loading finishes, then is closed)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()

    async def _preload(self) -> None:
        for name in self.preload:
            log.info("preloading model %s", name)
            try:
                waited = await self.service.load_only_async(name, FOREVER)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self._stopping:
                    return
                message = str(err) or type(err).__name__
                self.errors[name] = message
                log.error("preloading model %s failed: %s", name, message)
            else:
                log.info("preloaded model %s in %.1f s", name, waited / 1e9)
            finally:
                self._pending.discard(name)

    def problems(self) -> list[str]:
        """Why the server is not ready; empty when it is. Reads the scheduler (may block)."""
        if not self.started:
            return ["the server is starting"]
        if not self.preload:
            return []
        loaded = {info.key.name for info in self.service.loaded() if info.runner.model.alive}
        problems = []
        for name in self.preload:
            if _display(name) in loaded:
                continue
            if name in self.errors:
                problems.append(f"model {name!r} failed to load: {self.errors[name]}")
            elif name in self._pending:
                problems.append(f"model {name!r} is loading")
            else:
                problems.append(f"model {name!r} is not loaded")
        return problems


def health_router(readiness: Readiness, metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    @router.head("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    @router.head("/readyz")
    def readyz() -> JSONResponse:
        problems = readiness.problems()
        if problems:
            return JSONResponse({"error": "not ready: " + "; ".join(problems)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router
