#!/usr/bin/env python3
"""Soak: many clients for a set time against a real server with the tiny model, a mix of
what real clients do (streamed and whole generate and chat, embeddings, clients that leave
mid-stream, bad bodies, unknown models, bursts past the queue), then a report: requests by
status, latency p50/p99, and the server's and runner's memory, open files and threads before
and after (after a warm-up, so lazily started pools are in the baseline).

    python benchmarks/soak.py [--clients 16] [--seconds 600] [--gguf PATH]

Without ``--gguf`` the test suite's tiny GGUF (random weights, made with the ``gguf``
package) is generated in a temporary folder. ``tests/server/test_soak.py`` runs 30 seconds
of it and checks that only intended statuses came back and nothing grew.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {200, 400, 404, 503}
"""Intended answers: success, bad request, unknown model, queue full."""


@dataclass
class ProcessUsage:
    rss: int
    fds: int
    threads: int


def usage(pid: int) -> ProcessUsage:
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return ProcessUsage(rss, len(os.listdir(f"/proc/{pid}/fd")), threads)


@dataclass
class SoakReport:
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    before: dict[str, ProcessUsage] = field(default_factory=dict)
    after: dict[str, ProcessUsage] = field(default_factory=dict)

    @property
    def unexpected(self) -> dict[int, int]:
        return {code: n for code, n in self.statuses.items() if code not in ALLOWED}

    def table(self) -> str:
        served = sum(self.statuses.values())
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        rows = [
            f"requests: {served} in {self.seconds:.0f} s ({served / self.seconds:.1f}/s)",
            "by status: " + ", ".join(f"{c}: {n}" for c, n in sorted(self.statuses.items())),
            "by kind: " + ", ".join(f"{k}: {n}" for k, n in sorted(self.kinds.items())),
            f"latency: p50 {statistics.median(lat) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms",
            "| process | RSS before | RSS after | fds before | fds after | threads before "
            "| threads after |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, b in self.before.items():
            a = self.after.get(name, b)
            rows.append(
                f"| {name} | {b.rss / 2**20:.0f} MB | {a.rss / 2**20:.0f} MB | {b.fds} | "
                f"{a.fds} | {b.threads} | {a.threads} |"
            )
        return "\n".join(rows)


async def _one(client: Any, model: str, rng: random.Random, report: SoakReport) -> None:
    """One request of a kind drawn at random; its status and latency go in the report."""
    import httpx

    kind = rng.choice(
        ["stream", "stream", "whole", "chat", "embed", "leave", "bad_json", "unknown", "burst"]
    )
    opts = {"num_predict": rng.randint(1, 12)}
    started = time.perf_counter()
    status = 0
    try:
        if kind in ("stream", "leave"):
            body = {"model": model, "prompt": "hello", "options": opts}
            async with client.stream("POST", "/api/generate", json=body) as r:
                status = r.status_code
                async for i, _ in _enumerate(r.aiter_lines()):
                    if kind == "leave" and i >= 1:
                        break  # a client that goes away mid-stream
        elif kind in ("whole", "burst"):
            body = {"model": model, "prompt": "hi", "stream": False, "options": opts}
            if kind == "burst":  # a few at once, beyond the queue
                answers = await asyncio.gather(
                    *(client.post("/api/generate", json=body) for _ in range(6))
                )
                for answer in answers[1:]:
                    report.statuses[answer.status_code] += 1
                status = answers[0].status_code
            else:
                status = (await client.post("/api/generate", json=body)).status_code
        elif kind == "chat":
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": False,
                "options": opts,
            }
            status = (await client.post("/api/chat", json=body)).status_code
        elif kind == "embed":
            body = {"model": model, "input": ["one", "two"]}
            status = (await client.post("/api/embed", json=body)).status_code
        elif kind == "bad_json":
            status = (await client.post("/api/chat", content=b"{not json")).status_code
        else:
            body = {"model": "no-such-model", "prompt": "hi"}
            status = (await client.post("/api/generate", json=body)).status_code
    except httpx.HTTPError as err:
        status = -1  # a transport failure: never intended
        report.kinds[f"error:{type(err).__name__}"] += 1
    report.statuses[status] += 1
    report.kinds[kind] += 1
    report.latencies.append(time.perf_counter() - started)


async def _enumerate(lines: Any) -> Any:
    i = 0
    async for line in lines:
        yield i, line
        i += 1


async def _clients(url: str, model: str, clients: int, seconds: float, report: SoakReport) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients * 8)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < deadline:
                await _one(client, model, rng, report)

        await asyncio.gather(*(worker(n) for n in range(clients)))


def processes(url: str, server_pid: int) -> dict[str, int]:
    """The server's pid and its runners' (from ``/api/ps``)."""
    import httpx

    found = {"server": server_pid}
    for m in httpx.get(f"{url}/api/ps").json().get("models", []):
        runner = m.get("runner") or {}
        if runner.get("pid"):
            found[f"runner {m['name']}"] = runner["pid"]
    return found


SETTLE = 11.0
"""Seconds of quiet before each usage reading: AnyIO ends worker threads idle for 10 s (at
its next call, which :func:`settle` makes), so a reading counts the threads that stay (a
leak), not the pool's working size."""


def settle(url: str) -> None:
    import httpx

    time.sleep(SETTLE)
    httpx.get(f"{url}/api/tags").raise_for_status()  # a call into the pool, which prunes it
    time.sleep(0.5)


def soak(url: str, server_pid: int, model: str, clients: int, seconds: float) -> SoakReport:
    """Warm up for a few seconds, take the baseline, run ``seconds``, take the usage again
    (each reading after :data:`SETTLE` seconds of quiet)."""
    warm = SoakReport(3.0)
    asyncio.run(_clients(url, model, clients, warm.seconds, warm))
    settle(url)
    report = SoakReport(seconds)
    pids = processes(url, server_pid)
    report.before = {name: usage(pid) for name, pid in pids.items()}
    asyncio.run(_clients(url, model, clients, seconds, report))
    settle(url)
    report.after = {
        name: usage(pid) for name, pid in pids.items() if os.path.exists(f"/proc/{pid}")
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--gguf", type=Path, help="a GGUF (default: the tests' tiny model)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.server import running_server
    from fixtures.tiny_gguf import write_tiny_gguf
    from modelkit.build import BuildCache, execute_build, plan_build
    from modelkit.modelfile import parse
    from modelkit.names import ModelName
    from modelkit.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gguf = args.gguf
        if gguf is None:
            gguf = work / "tiny.gguf"
            write_tiny_gguf(gguf)
        store = Store(work / "models")
        modelfile = f"FROM {gguf}\nPARAMETER num_ctx 256\nPARAMETER num_thread 1\n"
        cache = BuildCache.for_store(store.root)
        execute_build(
            plan_build(parse(modelfile), store, cache), ModelName.parse("soak"), store, cache
        )
        env = {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "8", "OLLAMA_KEEP_ALIVE": "-1"}
        with running_server(store.root, work, env=env) as server:
            report = soak(server.url, server.process.pid, "soak", args.clients, args.seconds)
    print(report.table())
    if report.unexpected:
        print(f"unexpected statuses: {report.unexpected}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
