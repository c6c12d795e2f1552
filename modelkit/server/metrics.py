"""``/metrics``: Prometheus metrics of one app, in a registry of its own (several apps in one
process, as in tests, do not clash).

Three sources feed it:

* :class:`RequestMetrics`, an ASGI middleware, counts every HTTP request by route template,
  model and status code when its response ends (a streamed one at its last byte).
* :class:`Metrics` is the inference service's observer
  (:class:`~modelkit.runtime.service.ServiceObserver`): tokens, time to first token,
  tokens per second, model loads.
* At scrape time, :class:`_RuntimeCollector` reads the scheduler: loaded models, each
  runner's resident memory, requests in flight (leased slots) and queued per model.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelkit.errors import ModelNameError
from modelkit.names import ModelName
from modelkit.runtime.service import InferenceService

if TYPE_CHECKING:
    from modelkit.runtime.engine.results import GenerationStats

__all__ = ["CONTENT_TYPE", "Metrics", "RequestMetrics", "note_model"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

MODEL_SCOPE_KEY = "modelkit.model"
"""Where a route notes the model a request names (the ASGI scope), for the request counter."""

UNMATCHED = "unmatched"
"""The ``endpoint`` label of requests no route matched (404s for any path: one series)."""

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TPS_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def note_model(scope: MutableMapping[str, Any], name: str) -> None:
    """Record the model a request names (read by :class:`RequestMetrics`)."""
    scope[MODEL_SCOPE_KEY] = name


def _model_label(name: str) -> str:
    try:
        return ModelName.parse(name).display
    except ModelNameError:
        return ""


class Metrics:
    """The app's registry and instruments; also the inference service's observer."""

    def __init__(self, service: InferenceService) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelkit_requests",
            "HTTP requests by route template, model (empty when none, or for 4xx answers) "
            "and status code, counted when the response ends",
            ["endpoint", "model", "code"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "modelkit_generated_tokens",
            "Tokens generated (eval_count of each finished chat/generate answer)",
            ["model"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "modelkit_prompt_tokens",
            "Prompt tokens evaluated (prompt_eval_count of each finished chat/generate answer)",
            ["model"],
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "modelkit_time_to_first_token_seconds",
            "From asking for the model's slot (queueing and loading included) to the first "
            "generated token",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "modelkit_tokens_per_second",
            "Generation speed of each finished answer (eval_count / eval_duration)",
            ["model"],
            buckets=_TPS_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "modelkit_model_load_seconds",
            "Time to start a model's runner and load its weights",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self.loads = Counter(
            "modelkit_model_loads",
            "Model loads by result (ok or error)",
            ["model", "result"],
            registry=r,
        )
        r.register(_RuntimeCollector(service))

    def render(self) -> bytes:
        """The registry in Prometheus' text format (reads the scheduler: may block briefly)."""
        return generate_latest(self.registry)

    # -- the service's observer -------------------------------------------------------------

    def model_loaded(self, model: str, seconds: float, ok: bool) -> None:
        self.loads.labels(model, "ok" if ok else "error").inc()
        if ok:
            self.load_seconds.labels(model).observe(seconds)

    def generation_finished(
        self, model: str, stats: GenerationStats, first_token_seconds: float | None
    ) -> None:
        self.generated_tokens.labels(model).inc(stats.eval_count)
        self.prompt_tokens.labels(model).inc(stats.prompt_eval_count)
        if first_token_seconds is not None:
            self.time_to_first_token.labels(model).observe(first_token_seconds)
        if stats.eval_count > 0 and stats.eval_duration > 0:
            rate = stats.eval_count / (stats.eval_duration / 1e9)
            self.tokens_per_second.labels(model).observe(rate)

    # -- requests -------------------------------------------------------------------------------

    def count_request(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or UNMATCHED
        # Names from client errors (404 for a model that is not there, 400 for a bad one)
        # would let any client add series without end.
        raw = scope.get(MODEL_SCOPE_KEY)
        model = _model_label(raw) if isinstance(raw, str) and not 400 <= status < 500 else ""
        self.requests.labels(endpoint, model, str(status)).inc()


class RequestMetrics:
    """ASGI middleware: counts each HTTP request in :attr:`Metrics.requests` once its
    response has ended (or failed: an exception without a response counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.metrics.count_request(scope, status)


class _RuntimeCollector(Collector):
    """What the scheduler holds right now, read at each scrape."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        loaded = self.service.loaded()
        waiting: dict[str, int] = {}
        for key, queued_for_key in self.service.scheduler.waiting_by_key().items():
            waiting[key.name] = waiting.get(key.name, 0) + queued_for_key
        in_flight: dict[str, int] = {}
        memory: dict[str, int] = {}
        for info in loaded:
            name = info.key.name
            in_flight[name] = in_flight.get(name, 0) + info.active
            memory[name] = memory.get(name, 0) + info.runner.model.rss()

        models = GaugeMetricFamily("modelkit_loaded_models", "Models loaded (runner processes)")
        models.add_metric([], len(loaded))
        yield models
        rss = GaugeMetricFamily(
            "modelkit_model_memory_bytes",
            "Resident memory (RSS) of each loaded model's runner process",
            labels=["model"],
        )
        for name, size in sorted(memory.items()):
            rss.add_metric([name], size)
        yield rss
        active = GaugeMetricFamily(
            "modelkit_in_flight_requests",
            "Requests holding one of the model's slots (generating or embedding)",
            labels=["model"],
        )
        queued = GaugeMetricFamily(
            "modelkit_queued_requests",
            "Requests waiting for the model's slot or load",
            labels=["model"],
        )
        for name in sorted({*in_flight, *waiting}):
            active.add_metric([name], in_flight.get(name, 0))
            queued.add_metric([name], waiting.get(name, 0))
        yield active
        yield queued
