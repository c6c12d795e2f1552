"""Run a test spec's cases against a model: in process (``InferenceService``) or over HTTP
against a running ``modelkit serve`` / Ollama server."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from modelkit.config import Settings
from modelkit.errors import ModelkitError
from modelkit.validate.assertions import Failure, Output, ToolCallOut, check
from modelkit.validate.spec import Case, TestSpec


@dataclass
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "error"
    duration: float
    output: str = ""
    failures: list[Failure] = field(default_factory=list)
    error: str = ""
    measured: Output | None = None
    """The whole answer with its timings (None when the case errored)."""


class Backend(Protocol):
    def warm(self, model: str, options: dict[str, Any]) -> None: ...

    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output: ...

    def embed(self, model: str, texts: list[str]) -> list[list[float]]: ...

    def close(self) -> None: ...


def _messages(case: Case) -> list[dict[str, Any]] | None:
    if case.messages is None:
        return None
    messages = [dict(m) for m in case.messages]
    if case.system is not None:
        messages.insert(0, {"role": "system", "content": case.system})
    if case.images:
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        messages[users[-1] if users else -1]["images"] = list(case.images)
    return messages


class _Answer:
    """A streamed answer as it arrives, timed as the client sees it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[ToolCallOut] = []

    def add(self, text: str, thought: str, calls: list[ToolCallOut]) -> None:
        if self.first is None and (text or thought or calls):
            self.first = time.perf_counter() - self.start
        self.content.append(text)
        self.thinking.append(thought)
        self.calls += calls

    def output(self, done_reason: str, eval_count: int, eval_duration: float | None) -> Output:
        return Output(
            "".join(self.content),
            done_reason,
            eval_count,
            tool_calls=self.calls,
            thinking="".join(self.thinking),
            eval_duration=eval_duration,
            ttft=self.first,
            total=time.perf_counter() - self.start,
        )


class InProcessBackend:
    """Run the model in this process, as ``modelkit serve`` would.

    ``jobs`` parallel cases get as many slots; ``service`` lets a build hand over one that
    already serves its not-yet-tagged model."""

    def __init__(self, settings: Settings, jobs: int = 1, service: Any = None) -> None:
        from modelkit.runtime.service import InferenceService
        from modelkit.store import Store

        if service is None:
            parallel = max(settings.num_parallel, jobs)
            service = InferenceService(
                Store(settings.models), replace(settings, num_parallel=parallel)
            )
        self.service = service

    def warm(self, model: str, options: dict[str, Any]) -> None:
        self.service.load_only(model, None, options)

    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output:
        from modelkit.runtime.service import ChatRequest, GenerateRequest

        answer = _Answer()
        messages = _messages(case)
        if messages is not None:
            events = self.service.chat(
                ChatRequest(
                    model=model,
                    messages=messages,
                    tools=case.tools,
                    format=case.format,
                    grammar=case.grammar,
                    options=options,
                )
            )
        else:
            events = self.service.generate(
                GenerateRequest(
                    model=model,
                    prompt=case.prompt or "",
                    system=case.system,
                    format=case.format,
                    grammar=case.grammar,
                    options=options,
                    images=list(case.images),
                )
            )
        done_reason, eval_count, eval_duration = "", 0, None
        for event in events:
            calls = [ToolCallOut(c.name, c.arguments) for c in event.tool_calls]
            answer.add(event.content, event.thinking, calls)
            if event.done:
                done_reason = event.done_reason
                if event.stats:
                    eval_count = event.stats.eval_count
                    eval_duration = event.stats.eval_duration / 1e9
        return answer.output(done_reason, eval_count, eval_duration)

    def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.service.embed(model, texts).embeddings
        return vectors

    def close(self) -> None:
        self.service.shutdown()


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text


class HttpBackend:
    """Send each case to a server's /api/chat or /api/generate, streamed, so the time to
    the first token is what a client of that server sees."""

    def __init__(
        self, host: str, timeout: float = 600.0, headers: dict[str, str] | None = None
    ) -> None:
        self.client = httpx.Client(base_url=host.rstrip("/"), timeout=timeout, headers=headers)

    def _post(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    message = _error_text(response)
                    raise ModelkitError(f"{path} answered {response.status_code}: {message}")
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    chunk: dict[str, Any] = json.loads(line)
                    if "error" in chunk:
                        raise ModelkitError(f"{path} failed mid-answer: {chunk['error']}")
                    yield chunk
        except httpx.HTTPError as err:
            raise ModelkitError(f"cannot reach {self.client.base_url}: {err}") from err
        except ValueError as err:
            raise ModelkitError(f"{path} sent a line that is not JSON: {err}") from err

    def warm(self, model: str, options: dict[str, Any]) -> None:
        # Ollama loads a model on a generate request without a prompt.
        for _ in self._post("/api/generate", {"model": model, "options": options}):
            pass

    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output:
        body: dict[str, Any] = {"model": model, "stream": True, "options": options}
        if case.format is not None:
            body["format"] = case.format
        if case.grammar is not None:
            body["grammar"] = case.grammar
        messages = _messages(case)
        if messages is not None:
            body["messages"] = messages
            if case.tools:
                body["tools"] = case.tools
            path = "/api/chat"
        else:
            body["prompt"] = case.prompt or ""
            if case.system is not None:
                body["system"] = case.system
            if case.images:
                body["images"] = list(case.images)
            path = "/api/generate"
        answer = _Answer()
        last: dict[str, Any] = {}
        for chunk in self._post(path, body):
            message = chunk.get("message") or {}
            calls = [
                ToolCallOut(
                    str(c.get("function", {}).get("name", "")),
                    dict(c.get("function", {}).get("arguments") or {}),
                )
                for c in message.get("tool_calls") or []
            ]
            answer.add(
                str(message.get("content") or chunk.get("response") or ""),
                str(message.get("thinking") or chunk.get("thinking") or ""),
                calls,
            )
            last = chunk
        eval_ns = last.get("eval_duration")
        return answer.output(
            str(last.get("done_reason", "")),
            int(last.get("eval_count", 0)),
            int(eval_ns) / 1e9 if eval_ns else None,
        )

    def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        try:
            response = self.client.post("/api/embed", json={"model": model, "input": texts})
        except httpx.HTTPError as err:
            raise ModelkitError(f"cannot reach {self.client.base_url}: {err}") from err
        if response.status_code != 200:
            raise ModelkitError(
                f"/api/embed answered {response.status_code}: {_error_text(response)}"
            )
        vectors: list[list[float]] = response.json()["embeddings"]
        return vectors

    def close(self) -> None:
        self.client.close()


def select(cases: list[Case], expr: str | None) -> list[Case]:
    """Cases whose name matches ``-k``: words combined with ``and``, ``or``, ``not`` and
    parentheses, each a case-insensitive substring of the name."""
    if not expr:
        return cases
    tokens: list[str] = re.findall(r"\(|\)|[^\s()]+", expr)

    def matches(name: str) -> bool:
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise ModelkitError(f"invalid -k expression: {expr!r}")
            pos += 1
            return tokens[pos - 1]

        def either() -> bool:
            value = both()
            while peek() == "or":
                take()
                value = both() or value
            return value

        def both() -> bool:
            value = negated()
            while peek() == "and":
                take()
                value = negated() and value
            return value

        def negated() -> bool:
            if peek() == "not":
                take()
                return not negated()
            token = take()
            if token == "(":
                value = either()
                if take() != ")":
                    raise ModelkitError(f"invalid -k expression: {expr!r}")
                return value
            if token in ("and", "or", ")"):
                raise ModelkitError(f"invalid -k expression: {expr!r}")
            return token.lower() in name.lower()

        result = either()
        if pos != len(tokens):
            raise ModelkitError(f"invalid -k expression: {expr!r}")
        return result

    return [c for c in cases if matches(c.name)]


def build_model(modelfile: Path, settings: Settings) -> str:
    """Build ``modelfile`` into the store; returns the model name the cases run against."""
    from modelkit.build import BuildCache, execute_build, plan_build
    from modelkit.modelfile import parse_file
    from modelkit.names import ModelName
    from modelkit.store import Store

    store = Store(settings.models)
    stem = re.sub(r"[^a-z0-9._-]+", "-", modelfile.parent.resolve().name.lower()) or "model"
    tag = f"modelkit-test-{stem}:latest"
    plan = plan_build(parse_file(str(modelfile)), store, BuildCache.for_store(store.root))
    execute_build(plan, ModelName.parse(tag), store, BuildCache.for_store(store.root))
    return tag


def run_case(backend: Backend, model: str, case: Case, options: dict[str, Any]) -> CaseResult:
    start = time.perf_counter()
    try:
        output = backend.run(model, case, {**options, **case.options})
    except ModelkitError as err:
        return CaseResult(case.name, "error", time.perf_counter() - start, error=str(err))
    duration = time.perf_counter() - start

    def embed(texts: list[str], embedding_model: str | None) -> list[list[float]]:
        try:
            return backend.embed(embedding_model or model, texts)
        except ModelkitError as err:
            raise ValueError(str(err)) from err

    failures = [f for f in (check(a, output, embed) for a in case.asserts) if f is not None]
    status = "fail" if failures else "pass"
    return CaseResult(case.name, status, duration, output.content, failures, measured=output)


def run_spec(
    spec: TestSpec,
    backend: Backend,
    model: str,
    cases: list[Case],
    jobs: int = 1,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Each case's result, in the cases' order; ``jobs`` > 1 runs that many at once (latency
    budgets then include the wait for a slot). The model is loaded first, so the first
    case's time to first token does not include loading it."""
    with contextlib.suppress(ModelkitError):  # each case then reports the error itself
        backend.warm(model, spec.options)
    report = on_result or (lambda _result: None)
    report_lock = threading.Lock()

    def run(case: Case) -> CaseResult:
        result = run_case(backend, model, case, spec.options)
        with report_lock:  # as each case ends, so long runs show progress
            report(result)
        return result

    if jobs <= 1:
        return [run(case) for case in cases]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="modelkit-test") as pool:
        return list(pool.map(run, cases))
