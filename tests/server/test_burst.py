"""A burst of a few hundred concurrent clients against the real server and a cold model:
streamed and whole answers, clients that vanish mid-stream, bad bodies. Every request ends
(200, 503 beyond OLLAMA_MAX_QUEUE, or its 4xx), other routes answer during the burst, and
afterwards the server's threads and open files are back where they started.

Before queued requests waited on futures, each held one of AnyIO's 40 worker threads: past 40
queued, the request holding the model could not get a thread to go on, and the server hung
for good (issue 9)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fixtures.server import RunningServer, running_server
from modelkit.runtime.scheduler import QUEUE_FULL_MESSAGE
from modelkit.store import Store

pytest.importorskip("llama_cpp")

OPTIONS = {"num_predict": 4, "temperature": 0}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "options": OPTIONS}
IDLE_PRUNE_SECONDS = 10.5  # AnyIO stops worker threads idle this long at its next use


@dataclass
class Tally:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    ps_answers: int = 0


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _whole(client: httpx.AsyncClient, tally: Tally) -> None:
    r = await client.post("/api/chat", json={**CHAT, "stream": False})
    tally.statuses["whole", r.status_code] += 1
    if r.status_code == 200:
        assert r.json()["done"] is True and r.json()["eval_count"] == 4
    else:
        assert r.status_code == 503 and r.json() == {"error": QUEUE_FULL_MESSAGE}


async def _streamed(client: httpx.AsyncClient, tally: Tally, *, vanish: bool) -> None:
    body = {"model": "tiny", "prompt": "hello", "options": OPTIONS}
    async with client.stream("POST", "/api/generate", json=body) as r:
        kind = "vanish" if vanish else "stream"
        tally.statuses[kind, r.status_code] += 1
        if r.status_code != 200:
            await r.aread()
            assert r.status_code == 503, r.text
            return
        lines = 0
        async for _ in r.aiter_lines():
            lines += 1
            if vanish:
                return  # the client goes away mid-stream: its slot must free
        assert lines >= 2


async def _openai(client: httpx.AsyncClient, tally: Tally) -> None:
    body = {"model": "tiny", "messages": CHAT["messages"], "max_tokens": 4, "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        text = (await r.aread()).decode()
        tally.statuses["openai", r.status_code] += 1
        if r.status_code == 200:
            assert text.rstrip().endswith("data: [DONE]")
        else:
            assert r.status_code == 503, text


async def _bad(client: httpx.AsyncClient, tally: Tally, i: int) -> None:
    if i % 3 == 0:
        r = await client.post("/api/chat", content=b'{"model": "tiny", "messages": [')
        expected = 400
    elif i % 3 == 1:
        r = await client.post("/api/generate", json={"prompt": "no model"})
        expected = 400
    else:
        r = await client.post("/api/chat", json={**CHAT, "model": "missing"})
        expected = 404
    tally.statuses["bad", r.status_code] += 1
    assert r.status_code == expected and "error" in r.json(), r.text


async def _poll_ps(client: httpx.AsyncClient, tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        r = await client.get("/api/ps", timeout=10)
        assert r.status_code == 200 and "models" in r.json()
        tally.ps_answers += 1
        await asyncio.sleep(0.05)


async def _burst(
    url: str, *, whole: int, streamed: int, vanish: int, openai: int, bad: int
) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    timeout = httpx.Timeout(120.0)
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(base_url=url, timeout=timeout) as side,
    ):
        jobs = (
            [_whole(client, tally) for _ in range(whole)]
            + [_streamed(client, tally, vanish=False) for _ in range(streamed)]
            + [_streamed(client, tally, vanish=True) for _ in range(vanish)]
            + [_openai(client, tally) for _ in range(openai)]
            + [_bad(client, tally, i) for i in range(bad)]
        )
        random.Random(9).shuffle(jobs)
        stop = asyncio.Event()
        poller = asyncio.create_task(_poll_ps(side, tally, stop))
        try:
            results = await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            stop.set()
            await poller
    tally.errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return tally


def _settle(server: RunningServer, threads: int, fds: int) -> tuple[int, int]:
    """Let idle worker threads and closed connections go, then count again."""
    pid = server.process.pid
    time.sleep(IDLE_PRUNE_SECONDS)
    deadline = time.monotonic() + 20
    while True:
        httpx.get(server.url + "/api/ps", timeout=10)  # AnyIO prunes idle workers on use
        now = (_threads(pid), _fds(pid))
        if (now[0] <= threads and now[1] <= fds) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("parallel", "queue", "counts"),
    [
        # 300 clients, 16 may wait: most are refused with 503, at once
        ("1", "16", {"whole": 110, "streamed": 70, "vanish": 40, "openai": 20, "bad": 60}),
        ("4", "32", {"whole": 110, "streamed": 70, "vanish": 40, "openai": 20, "bad": 60}),
        # 240 generating clients all queued on one slot: far past AnyIO's 40 threads
        ("1", "512", {"whole": 120, "streamed": 60, "vanish": 40, "openai": 20, "bad": 30}),
    ],
    ids=["parallel1-queue16", "parallel4-queue32", "parallel1-queue512"],
)
def test_burst_of_clients(
    tiny_store: Store, tmp_path: Path, parallel: str, queue: str, counts: dict[str, int]
) -> None:
    env = {"OLLAMA_NUM_PARALLEL": parallel, "OLLAMA_MAX_QUEUE": queue}
    with running_server(tiny_store.root, tmp_path, env) as server:
        # Warm up every path once (the model loads, pools start); then unload, so that the
        # burst meets a cold model.
        warm = asyncio.run(_burst(server.url, whole=1, streamed=1, vanish=1, openai=1, bad=3))
        assert not warm.errors, warm.errors
        httpx.post(server.url + "/api/generate", json={"model": "tiny", "keep_alive": 0})
        threads, fds = _settle(server, 10**6, 10**6)

        tally = asyncio.run(_burst(server.url, **counts))

        assert not tally.errors, tally.errors[:5]
        done = sum(tally.statuses.values())
        assert done == sum(counts.values())  # every request ended
        ok = {kind: n for (kind, status), n in tally.statuses.items() if status == 200}
        refused = sum(n for (_, status), n in tally.statuses.items() if status == 503)
        assert sum(ok.values()) >= 1 and tally.ps_answers >= 1
        if queue == "512":
            assert refused == 0  # nothing beyond the queue: every one was served
        else:
            assert refused > 0  # the queue limit was reached and said so
        assert tally.statuses["bad", 400] + tally.statuses["bad", 404] == counts["bad"]

        # the server still answers, and gave back its threads and files
        after = httpx.post(server.url + "/api/chat", json={**CHAT, "stream": False}, timeout=60)
        assert after.status_code == 200, after.text
        httpx.post(server.url + "/api/generate", json={"model": "tiny", "keep_alive": 0})
        now_threads, now_fds = _settle(server, threads, fds)
        assert now_threads <= threads, (now_threads, threads)
        assert now_fds <= fds, (now_fds, fds)
        assert server.process.poll() is None, server.log_text()[-2000:]
        assert "Traceback" not in server.log_text(), server.log_text()[-4000:]
