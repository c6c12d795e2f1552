"""The real server with models in runner processes, and runners that die for real: a segfault
injected through ctypes mid-generation, SIGKILL, a crash at the first decode, a crash loop,
and the server itself stopped or killed. Other models carry on; nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.server import RunningServer, process_running, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.runtime.runner import runner_pids
from modelkit.runtime.runner.child import CRASH_AFTER, CRASH_ONCE, CRASH_UNSAFE
from modelkit.store import Store

pytest.importorskip("llama_cpp")

OPTIONS = {"num_predict": 8, "temperature": 0}
SEGV = "model runner for crashy:latest stopped: signal 11 (SIGSEGV)"


@pytest.fixture
def two_models(tiny_store: Store, tmp_path: Path) -> Store:
    """``tiny`` and ``crashy``: the same weights under two names, so two runners."""
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny\nPARAMETER num_thread 1\n")
    cache = BuildCache.for_store(tiny_store.root)
    plan = plan_build(parse(modelfile.read_text()), tiny_store, cache)
    execute_build(plan, ModelName.parse("crashy"), tiny_store, cache)
    return tiny_store


def _ps(server: RunningServer) -> dict[str, dict[str, object]]:
    models = httpx.get(server.url + "/api/ps", timeout=30).json()["models"]
    return {m["name"]: m for m in models}


def _chat(server: RunningServer, model: str, *, stream: bool, predict: int = 8) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "options": {**OPTIONS, "num_predict": predict},
        "stream": stream,
    }
    return httpx.post(server.url + "/api/chat", json=body, timeout=120)


def _lines(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _no_zombies(server: RunningServer) -> None:
    for pid in runner_pids(server.process.pid):
        assert process_running(pid), f"zombie runner {pid}"


@pytest.fixture
def crash_once(two_models: Store, tmp_path: Path) -> Iterator[RunningServer]:
    env = {CRASH_AFTER: "crashy=3", CRASH_ONCE: str(tmp_path / "crashed")}
    with running_server(two_models.root, tmp_path, env) as server:
        yield server


def test_a_segfault_fails_its_requests_only_and_a_new_runner_follows(
    crash_once: RunningServer,
) -> None:
    server = crash_once
    assert _chat(server, "tiny", stream=False).status_code == 200
    assert _chat(server, "crashy", stream=False, predict=1).status_code == 200  # loads it
    before = _ps(server)["crashy:latest"]["runner"]
    assert isinstance(before, dict) and before["pid"] in runner_pids(server.process.pid)

    streamed = _chat(server, "crashy", stream=True)  # crashes at its third token
    assert streamed.status_code == 200
    lines = _lines(streamed)
    assert lines[-1] == {"error": SEGV} and len(lines) >= 2  # tokens, then the error

    assert _chat(server, "tiny", stream=False).status_code == 200  # the other model carries on
    again = _chat(server, "crashy", stream=False)  # a fresh runner (the fault fired once)
    assert again.status_code == 200, again.text
    after = _ps(server)["crashy:latest"]["runner"]
    assert isinstance(after, dict) and after["pid"] != before["pid"]
    _no_zombies(server)
    assert "Traceback" not in server.log_text()


def test_whole_answers_get_a_500(two_models: Store, tmp_path: Path) -> None:
    env = {CRASH_AFTER: "crashy=3", CRASH_ONCE: str(tmp_path / "crashed")}
    with running_server(two_models.root, tmp_path, env) as server:
        r = _chat(server, "crashy", stream=False)
        assert r.status_code == 500 and r.json() == {"error": SEGV}
        v1 = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "crashy", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert v1.status_code == 200  # the fault fired once: a new runner answers


def test_sigkill_of_a_runner(two_models: Store, tmp_path: Path) -> None:
    with running_server(two_models.root, tmp_path) as server:
        assert _chat(server, "crashy", stream=False, predict=1).status_code == 200
        pid = _ps(server)["crashy:latest"]["runner"]["pid"]  # type: ignore[index]
        body = {"model": "crashy", "prompt": "hi", "options": {"num_predict": 100_000}}
        with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(lines)
            os.kill(pid, signal.SIGKILL)
            rest = [json.loads(line) for line in lines if line.strip()]
        assert rest[-1] == {"error": "model runner for crashy:latest stopped: signal 9 (SIGKILL)"}
        assert _chat(server, "crashy", stream=False).status_code == 200
        _no_zombies(server)


def test_a_crash_loop_is_refused(two_models: Store, tmp_path: Path) -> None:
    with running_server(two_models.root, tmp_path, {CRASH_AFTER: "crashy=2"}) as server:
        for _ in range(3):
            assert _chat(server, "crashy", stream=False).json() == {"error": SEGV}
        refused = _chat(server, "crashy", stream=False)
        assert refused.status_code == 500
        assert "stopped 3 times in the last 5 minutes" in refused.json()["error"]
        assert _chat(server, "tiny", stream=False).status_code == 200


def test_first_decode_crash_retries_with_safe_kernels(two_models: Store, tmp_path: Path) -> None:
    with running_server(two_models.root, tmp_path, {CRASH_UNSAFE: "1"}) as server:
        r = _chat(server, "crashy", stream=True)
        assert r.status_code == 200 and "error" not in _lines(r)[-1], r.text
        assert _ps(server)["crashy:latest"]["runner"]["kernels"] == "cpu"  # type: ignore[index]
        assert "safe CPU kernels" in server.log_text()
        assert _chat(server, "crashy", stream=False).status_code == 200  # the choice is kept


def test_the_server_never_loads_llama_cpp(two_models: Store, tmp_path: Path) -> None:
    with running_server(two_models.root, tmp_path) as server:
        assert _chat(server, "tiny", stream=False, predict=1).status_code == 200
        r = httpx.post(
            server.url + "/api/chat",
            json={
                "model": "tiny",
                "messages": [{"role": "user", "content": "hi"}],
                "format": {"type": "object"},
                "stream": False,
                "options": OPTIONS,
            },
            timeout=60,
        )
        assert r.status_code == 200
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "libllama" not in maps and "libggml" not in maps
        runner = _ps(server)["tiny:latest"]["runner"]
        assert isinstance(runner, dict)
        assert "libllama" in Path(f"/proc/{runner['pid']}/maps").read_text()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_runner_outlives_the_server(two_models: Store, tmp_path: Path, how: int) -> None:
    with running_server(two_models.root, tmp_path) as server:
        for model in ("tiny", "crashy"):
            assert _chat(server, model, stream=False, predict=1).status_code == 200
        pids = runner_pids(server.process.pid)
        assert len(pids) == 2
        server.process.send_signal(how)
        server.process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(process_running(pid) for pid in pids):
            assert time.monotonic() < deadline, "a runner outlived the server"
            time.sleep(0.05)
