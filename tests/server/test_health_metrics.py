"""Probes, metrics, preloading, ``modelkit healthcheck``, graceful shutdown and a start-up
that writes nothing — through the real server process over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.server import (
    RunningServer,
    free_port,
    process_running,
    running_process,
    running_server,
)
from modelkit.config import Settings
from modelkit.runtime.runner import runner_pids
from modelkit.store import Store

pytest.importorskip("llama_cpp")

OPTIONS = {"num_predict": 8, "temperature": 0, "num_thread": 1}
MODEL = "tiny:latest"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""``/metrics`` samples by name and sorted labels."""


def _metrics(server: RunningServer) -> Samples:
    response = httpx.get(server.url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _serve(
    store: Store, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AbstractContextManager[RunningServer]:
    port = free_port()
    environ = {
        **os.environ,
        "OLLAMA_MODELS": str(store.root),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "modelkit", "serve", *args]
    return running_process(
        cmd,
        f"http://127.0.0.1:{port}",
        tmp_path / f"server-{port}.log",
        ready_path="/healthz",
        env=environ,
    )


def _wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# -- probes ------------------------------------------------------------------------------------


def test_healthz_and_readyz_without_preload(server: RunningServer) -> None:
    health = httpx.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    assert httpx.get(server.url + "/", timeout=10).text == "Ollama is running"
    assert httpx.head(server.url + "/healthz", timeout=10).status_code == 200


def test_preload_makes_ready_and_unload_makes_unready(tiny_store: Store, tmp_path: Path) -> None:
    with _serve(tiny_store, tmp_path, env={"MODELKIT_PRELOAD": "tiny"}) as server:
        _wait_for(lambda: httpx.get(server.url + "/readyz", timeout=10).status_code == 200)
        models = httpx.get(server.url + "/api/ps", timeout=10).json()["models"]
        assert [m["name"] for m in models] == [MODEL]
        assert models[0]["expires_at"].startswith(str(time.gmtime().tm_year + 292))  # forever
        samples = _metrics(server)
        assert _value(samples, "modelkit_model_loads_total", model=MODEL, result="ok") == 1
        assert _value(samples, "modelkit_model_load_seconds_count", model=MODEL) == 1
        # Unloaded, the model is no longer ready: /readyz says so until it is loaded again.
        body = {"model": "tiny", "keep_alive": 0}
        assert httpx.post(server.url + "/api/generate", json=body, timeout=30).status_code == 200
        answer = httpx.get(server.url + "/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json() == {"error": "not ready: model 'tiny' is not loaded"}
        body = {"model": "tiny", "keep_alive": -1}
        assert httpx.post(server.url + "/api/generate", json=body, timeout=60).status_code == 200
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200


def test_a_failed_preload_keeps_readyz_503_and_the_server_up(
    tiny_store: Store, tmp_path: Path
) -> None:
    preload = ("--preload", "nope", "--preload", "tiny")
    with _serve(tiny_store, tmp_path, *preload) as server:

        def tiny_loaded() -> bool:
            models = httpx.get(server.url + "/api/ps", timeout=10).json()["models"]
            return [m["name"] for m in models] == [MODEL]

        _wait_for(tiny_loaded)
        answer = httpx.get(server.url + "/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json() == {
            "error": "not ready: model 'nope' failed to load: model 'nope' not found"
        }
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        body = {"model": "tiny", "prompt": "hi", "stream": False, "options": OPTIONS}
        assert httpx.post(server.url + "/api/generate", json=body, timeout=60).status_code == 200
        assert "preloading model nope failed: model 'nope' not found" in server.log_text()


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_after_generate_and_chat(server: RunningServer) -> None:
    before = _metrics(server)
    assert _value(before, "modelkit_loaded_models") == 0
    assert ("modelkit_generated_tokens_total", (("model", MODEL),)) not in before

    body = {"model": "tiny", "prompt": "hello", "stream": False, "options": OPTIONS}
    generated = httpx.post(server.url + "/api/generate", json=body, timeout=60).json()
    chat = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "options": OPTIONS,
    }
    with httpx.stream("POST", server.url + "/api/chat", json=chat, timeout=60) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    final = lines[-1]
    assert final["done"]
    missing = httpx.post(server.url + "/api/generate", json={**body, "model": "nope"}, timeout=30)
    assert missing.status_code == 404
    assert httpx.get(server.url + "/no/such/path", timeout=10).status_code == 404

    samples = _metrics(server)
    tokens = generated["eval_count"] + final["eval_count"]
    assert _value(samples, "modelkit_generated_tokens_total", model=MODEL) == tokens
    prompt = generated["prompt_eval_count"] + final["prompt_eval_count"]
    assert _value(samples, "modelkit_prompt_tokens_total", model=MODEL) == prompt
    for endpoint in ("/api/generate", "/api/chat"):
        count = _value(
            samples, "modelkit_requests_total", endpoint=endpoint, model=MODEL, code="200"
        )
        assert count == 1, endpoint
    # Client errors carry no model label (any name would make a series), unknown paths one.
    assert (
        _value(samples, "modelkit_requests_total", endpoint="/api/generate", model="", code="404")
        == 1
    )
    assert (
        _value(samples, "modelkit_requests_total", endpoint="unmatched", model="", code="404") == 1
    )
    assert ("modelkit_queued_requests", (("model", MODEL),)) in samples
    assert _value(samples, "modelkit_queued_requests", model=MODEL) == 0
    assert _value(samples, "modelkit_in_flight_requests", model=MODEL) == 0
    assert _value(samples, "modelkit_loaded_models") == 1
    assert _value(samples, "modelkit_model_memory_bytes", model=MODEL) > 0
    assert _value(samples, "modelkit_time_to_first_token_seconds_count", model=MODEL) == 2
    assert _value(samples, "modelkit_tokens_per_second_count", model=MODEL) == 2
    assert _value(samples, "modelkit_model_loads_total", model=MODEL, result="ok") == 1


def test_queue_and_in_flight_gauges(server: RunningServer) -> None:
    """One slot (OLLAMA_NUM_PARALLEL=1): a long stream holds it, a second request queues."""
    long = {"model": "tiny", "prompt": "hi", "options": {**OPTIONS, "num_predict": 10**7}}
    short = {"model": "tiny", "prompt": "hi", "stream": False, "options": OPTIONS}
    answers: list[int] = []
    with httpx.stream("POST", server.url + "/api/generate", json=long, timeout=60) as r:
        lines = r.iter_lines()  # kept: a dropped iterator closes the connection
        next(lines)
        waiter = threading.Thread(
            target=lambda: answers.append(
                httpx.post(server.url + "/api/generate", json=short, timeout=60).status_code
            )
        )
        waiter.start()
        _wait_for(
            lambda: _value(_metrics(server), "modelkit_queued_requests", model=MODEL) == 1,
            timeout=20,
        )
        assert _value(_metrics(server), "modelkit_in_flight_requests", model=MODEL) == 1
    waiter.join(60)  # the stream's client went away: its slot went to the queued request
    assert answers == [200]
    samples = _metrics(server)
    assert _value(samples, "modelkit_queued_requests", model=MODEL) == 0
    assert _value(samples, "modelkit_in_flight_requests", model=MODEL) == 0


def test_settings_from_the_environment() -> None:
    s = Settings.from_env({"MODELKIT_PRELOAD": " a, b,,a ", "MODELKIT_SHUTDOWN_TIMEOUT": "500ms"})
    assert s.preload == ("a", "b") and s.shutdown_timeout == 0.5
    assert Settings.from_env({"MODELKIT_SHUTDOWN_TIMEOUT": "12"}).shutdown_timeout == 12
    bad = Settings.from_env({"MODELKIT_SHUTDOWN_TIMEOUT": "soon"})
    assert bad.preload == () and bad.shutdown_timeout == 5


# -- modelkit healthcheck ----------------------------------------------------------------------


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelkit", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_healthcheck_command(server: RunningServer) -> None:
    ok = _healthcheck("--host", server.url)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    assert _healthcheck("--ready", env={"OLLAMA_HOST": server.url}).returncode == 0
    closed = _healthcheck("--host", f"127.0.0.1:{free_port()}")
    assert closed.returncode == 1
    assert closed.stderr.startswith("unhealthy: cannot reach http://127.0.0.1:")


def test_healthcheck_ready_fails_while_not_ready(tiny_store: Store, tmp_path: Path) -> None:
    with _serve(tiny_store, tmp_path, "--preload", "nope") as server:
        assert _healthcheck("--host", server.url).returncode == 0
        _wait_for(lambda: "nope" in httpx.get(server.url + "/readyz", timeout=10).text)
        not_ready = _healthcheck("--host", server.url, "--ready")
        assert not_ready.returncode == 1
        assert "HTTP 503" in not_ready.stderr and "model 'nope' failed to load" in not_ready.stderr


# -- graceful shutdown -------------------------------------------------------------------------


def test_sigterm_cuts_a_long_stream_at_the_deadline_and_exits_0(
    tiny_store: Store, tmp_path: Path
) -> None:
    env = {"MODELKIT_SHUTDOWN_TIMEOUT": "2"}
    with running_server(tiny_store.root, tmp_path, env) as server:
        first_line = threading.Event()
        lines: list[str] = []
        errors: list[BaseException] = []

        def stream() -> None:
            # Random weights never stop: with context shift this runs until cut.
            body = {"model": "tiny", "prompt": "hi", "options": {**OPTIONS, "num_predict": 10**7}}
            try:
                with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=60) as r:
                    for line in r.iter_lines():
                        lines.append(line)
                        first_line.set()
            except httpx.HTTPError as err:
                errors.append(err)
            finally:
                first_line.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first_line.wait(60) and lines, errors
        pids = runner_pids(server.process.pid)
        assert len(pids) == 1
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        elapsed = time.monotonic() - started
        print(f"SIGTERM to exit: {elapsed:.2f} s")
        assert code == 0, server.log_text()
        assert 1.5 < elapsed < 8, elapsed  # the 2 s deadline, then the runner stops
        reader.join(30)
        assert not reader.is_alive()
        assert not any('"done":true' in line for line in lines)  # cut, not finished
        assert not any(process_running(pid) for pid in pids)
        assert "timeout graceful shutdown exceeded" in server.log_text()


def test_sigterm_lets_a_short_request_finish(tiny_store: Store, tmp_path: Path) -> None:
    with running_server(tiny_store.root, tmp_path) as server:
        ask = {"model": "tiny", "prompt": "hi", "stream": False, "options": OPTIONS}
        assert httpx.post(server.url + "/api/generate", json=ask, timeout=60).status_code == 200
        pids = runner_pids(server.process.pid)
        answers: list[httpx.Response] = []
        body = {"model": "tiny", "prompt": "hi", "options": {**OPTIONS, "num_predict": 64}}
        got_first = threading.Event()

        def stream() -> None:
            with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    got_first.set()
                answers.append(r)

        reader = threading.Thread(target=stream)
        reader.start()
        assert got_first.wait(60)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log_text()
        print(f"SIGTERM to exit (request finishing first): {time.monotonic() - started:.2f} s")
        reader.join(30)
        assert answers and answers[0].status_code == 200
        assert not any(process_running(pid) for pid in pids)


# -- a read-only start-up ----------------------------------------------------------------------


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``roots`` with its size and mtime (directories included)."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            found[str(path)] = (st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return found


def test_serving_writes_nothing_to_the_store_or_home(tiny_store: Store, tmp_path: Path) -> None:
    # Without its lock files, any lock taken (a prune, a write) would show as a new file.
    for lock in (".modelkit.lock", ".modelkit.gc.lock"):
        (tiny_store.root / lock).unlink(missing_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    before = _tree(tiny_store.root, home)
    env = {"HOME": str(home), "MODELKIT_PRELOAD": "tiny"}
    with running_server(tiny_store.root, tmp_path, env) as server:
        _wait_for(lambda: httpx.get(server.url + "/readyz", timeout=10).status_code == 200)
        body = {"model": "tiny", "prompt": "hi", "stream": False, "options": OPTIONS}
        assert httpx.post(server.url + "/api/generate", json=body, timeout=60).status_code == 200
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        assert httpx.post(server.url + "/api/chat", json=chat, timeout=60).status_code == 200
        for path in ("/api/tags", "/api/ps", "/metrics"):
            assert httpx.get(server.url + path, timeout=10).status_code == 200
        show = httpx.post(server.url + "/api/show", json={"model": "tiny"}, timeout=10)
        assert show.status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    assert _tree(tiny_store.root, home) == before
