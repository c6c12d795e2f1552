"""Bursts of concurrent clients against ``modelkit serve``: the largest burst served whole,
and its latency percentiles as multiples of one request's latency alone.

Each burst sends N whole (``stream: false``) ``/api/chat`` requests at once to a loaded model
(``OLLAMA_NUM_PARALLEL`` slots, ``OLLAMA_MAX_QUEUE`` = N, so none is refused) and records
each request's latency. Ratios are against the median latency of one request alone, timed in
the same run: a burst of N on P slots should end near N/P of it (queued requests wait their
turn), and never hang.

    python benchmarks/bench_burst.py                     # the Qwen test model, bursts 50..400
    python benchmarks/bench_burst.py --gguf PATH --sizes 100,300 --parallel 4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import load_module, model_to_measure  # noqa: E402

SERVER_FIXTURE = REPO / "tests" / "fixtures" / "server.py"
BENCH_SERVE = REPO / "benchmarks" / "bench_serve.py"
MODEL = "bench"


def chat_body(num_predict: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 50."}],
        "options": {"num_predict": num_predict, "temperature": 0},
        "stream": False,
    }


async def burst(url: str, size: int, num_predict: int) -> tuple[list[float], int]:
    """Latencies of the requests that got 200, and how many did not."""
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:

        async def one() -> float | None:
            started = time.perf_counter()
            r = await client.post("/api/chat", json=chat_body(num_predict))
            return time.perf_counter() - started if r.status_code == 200 else None

        results = await asyncio.gather(*(one() for _ in range(size)))
    ok = [r for r in results if r is not None]
    return ok, size - len(ok)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="a GGUF model (default: the Qwen test model)")
    parser.add_argument("--sizes", default="50,100,200,400", help="burst sizes (comma list)")
    parser.add_argument("--parallel", type=int, default=1, help="OLLAMA_NUM_PARALLEL")
    parser.add_argument("--num-predict", type=int, default=8, help="tokens per answer")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    args = parser.parse_args(argv)
    gguf = model_to_measure(args.gguf)
    if gguf is None:
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    fixture = load_module("modelkit_tests_fixture_server", SERVER_FIXTURE)
    bench_serve = load_module("modelkit_bench_serve", BENCH_SERVE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "models"
        store.mkdir()
        bench_serve.build_model(gguf, store, work, args.threads)
        env = {
            "OLLAMA_NUM_PARALLEL": str(args.parallel),
            "OLLAMA_MAX_QUEUE": str(max(sizes)),
            "OLLAMA_KEEP_ALIVE": "-1",
        }
        with fixture.running_server(store, work, env=env, timeout=60.0) as server:
            alone = [asyncio.run(burst(server.url, 1, args.num_predict))[0][0] for _ in range(4)]
            base = statistics.median(alone[1:])  # the first one loads the model
            print(f"one request alone: {base:.3f} s (median of 3); parallel {args.parallel}")
            print(
                f"{'burst':>6} {'served':>7} {'refused':>8} {'p50/alone':>10} "
                f"{'p99/alone':>10} {'max/alone':>10}   p50 s   p99 s"
            )
            largest = 0
            for size in sizes:
                ok, refused = asyncio.run(burst(server.url, size, args.num_predict))
                p50, p99 = percentile(ok, 0.5), percentile(ok, 0.99)
                print(
                    f"{size:>6} {len(ok):>7} {refused:>8} {p50 / base:>9.1f}x {p99 / base:>9.1f}x "
                    f"{max(ok) / base:>9.1f}x {p50:7.2f} {p99:7.2f}"
                )
                if refused == 0:
                    largest = max(largest, size)
            print(f"largest burst served whole: {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
