"""Run a test spec's cases against a model: in process (``InferenceService``) or over HTTP
against a running ``modelkit serve`` / Ollama server."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from modelkit.config import Settings
from modelkit.errors import ModelkitError
from modelkit.validate.assertions import Failure, Output, check
from modelkit.validate.spec import Case, TestSpec


@dataclass
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "error"
    duration: float
    output: str = ""
    failures: list[Failure] = field(default_factory=list)
    error: str = ""


class Backend(Protocol):
    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output: ...

    def close(self) -> None: ...


def _messages(case: Case) -> list[dict[str, Any]] | None:
    if case.messages is None:
        return None
    messages = [dict(m) for m in case.messages]
    if case.system is not None:
        messages.insert(0, {"role": "system", "content": case.system})
    return messages


class InProcessBackend:
    """Run the model in this process, as ``modelkit serve`` would."""

    def __init__(self, settings: Settings) -> None:
        from modelkit.runtime.service import InferenceService
        from modelkit.store import Store

        self.service = InferenceService(Store(settings.models), settings)

    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output:
        from modelkit.runtime.service import ChatRequest, GenerateRequest

        messages = _messages(case)
        if messages is not None:
            events = self.service.chat(
                ChatRequest(model=model, messages=messages, format=case.format, options=options)
            )
        else:
            events = self.service.generate(
                GenerateRequest(
                    model=model,
                    prompt=case.prompt or "",
                    system=case.system,
                    format=case.format,
                    options=options,
                )
            )
        content: list[str] = []
        done_reason, eval_count = "", 0
        for event in events:
            content.append(event.content)
            if event.done:
                done_reason = event.done_reason
                eval_count = event.stats.eval_count if event.stats else 0
        return Output("".join(content), done_reason, eval_count)

    def close(self) -> None:
        self.service.shutdown()


class HttpBackend:
    """Send each case to a server's /api/chat or /api/generate (not streamed)."""

    def __init__(self, host: str, timeout: float = 600.0) -> None:
        self.client = httpx.Client(base_url=host.rstrip("/"), timeout=timeout)

    def run(self, model: str, case: Case, options: dict[str, Any]) -> Output:
        body: dict[str, Any] = {"model": model, "stream": False, "options": options}
        if case.format is not None:
            body["format"] = case.format
        messages = _messages(case)
        if messages is not None:
            body["messages"] = messages
            path = "/api/chat"
        else:
            body["prompt"] = case.prompt or ""
            if case.system is not None:
                body["system"] = case.system
            path = "/api/generate"
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as err:
            raise ModelkitError(f"cannot reach {self.client.base_url}: {err}") from err
        if response.status_code != 200:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise ModelkitError(f"{path} answered {response.status_code}: {message}")
        data: dict[str, Any] = response.json()
        content = (
            str(data.get("message", {}).get("content", ""))
            if messages is not None
            else str(data.get("response", ""))
        )
        return Output(content, str(data.get("done_reason", "")), int(data.get("eval_count", 0)))

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
    failures = [f for f in (check(a, output) for a in case.asserts) if f is not None]
    return CaseResult(case.name, "fail" if failures else "pass", duration, output.content, failures)


def run_spec(spec: TestSpec, backend: Backend, model: str, cases: list[Case]) -> list[CaseResult]:
    return [run_case(backend, model, case, spec.options) for case in cases]
