"""Parallel clients against whole servers: aggregate tokens/s of N clients asking
``/v1/completions`` at once, against 1 client alone, for modelkit and the servers it is
measured against — llama-cpp-python's ``python -m llama_cpp.server`` (when its ``[server]``
extras are installed) and llama.cpp's own ``llama-server`` (when ``--llama-server PATH`` names
a binary) — on the same GGUF, threads and slots, run one after the other in one process.

    python benchmarks/bench_clients.py [--gguf PATH] [--clients 4] [--num-predict 64]
                                       [--threads 2] [--runs 3] [--llama-server PATH]

Each request: a raw prompt that the model continues for longer than ``--num-predict``
tokens, temperature 0, streamed (SSE; tokens = chunks with text) or with ``--no-stream``
whole (tokens from the answer's ``usage``). Aggregate
tokens/s = all completion tokens / wall-clock from the first request sent to the last
answer. Reported: each server's 1-client and N-client speeds (median of ``--runs``), its
N ÷ 1 ratio, and modelkit ÷ each other server at N clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import add_model_arguments, load_module, model_to_measure  # noqa: E402

SERVER_FIXTURE = REPO / "tests" / "fixtures" / "server.py"
BENCH_SERVE = REPO / "benchmarks" / "bench_serve.py"
PROMPT = "The numbers from 1 to 500, separated by commas: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


async def aggregate(url: str, model: str, clients: int, num_predict: int, stream: bool) -> float:
    import httpx

    body = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": num_predict,
        "temperature": 0,
        "stream": stream,
    }
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def whole() -> int:
            r = await client.post("/v1/completions", json=body)
            r.raise_for_status()
            tokens: int = r.json()["usage"]["completion_tokens"]
            return tokens

        async def streamed() -> int:
            tokens = 0  # every server here sends one token a chunk
            async with client.stream("POST", "/v1/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    tokens += bool(choices[0].get("text"))
            return tokens

        started = time.perf_counter()
        counts = await asyncio.gather(*((streamed if stream else whole)() for _ in range(clients)))
    return sum(counts) / (time.perf_counter() - started)


@contextmanager
def external(fixture: ModuleType, cmd: list[str], url: str, log: Path) -> Iterator[str]:
    """Another project's server (``cmd``), once its ``/v1/models`` answers."""
    with fixture.running_process(cmd, url, log, ready_path="/v1/models", timeout=120) as running:
        yield running.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, runs=3, num_predict=64)
    parser.add_argument("--clients", type=int, default=4, help="clients at once (default 4)")
    parser.add_argument("--llama-server", type=Path, help="a llama.cpp llama-server binary")
    parser.add_argument(
        "--no-stream", action="store_true", help="whole answers (tokens from usage), not SSE"
    )
    args = parser.parse_args(argv)
    gguf = model_to_measure(args.gguf)
    if gguf is None:
        return 0
    fixture = load_module("modelkit_tests_fixture_server", SERVER_FIXTURE)
    bench_serve = load_module("modelkit_bench_serve", BENCH_SERVE)
    n, threads = args.clients, str(args.threads)
    stream = not args.no_stream
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "models"
        store.mkdir()
        bench_serve.build_model(gguf, store, work, args.threads)

        @contextmanager
        def modelkit() -> Iterator[str]:
            env = {"OLLAMA_NUM_PARALLEL": str(n), "OLLAMA_KEEP_ALIVE": "-1"}
            with fixture.running_server(store, work, env=env, timeout=60.0) as running:
                yield running.url

        servers = {"modelkit (runners)": (modelkit, bench_serve.MODEL_NAME)}
        port = fixture.free_port()
        try:
            import sse_starlette  # noqa: F401  (llama_cpp.server's [server] extras)

            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
            cmd += ["--n_threads", threads, "--n_ctx", "2048", "--port", str(port)]
            cmd += ["--host", "127.0.0.1", "--interrupt_requests", "False"]
            url = f"http://127.0.0.1:{port}"
            servers["llama_cpp.server"] = (
                lambda cmd=cmd, url=url: external(fixture, cmd, url, work / "llama_cpp_server.log"),
                "model",
            )
        except ImportError:
            print(
                "note: llama_cpp.server's extras are missing (pip install sse-starlette "
                "starlette-context pydantic-settings): no llama_cpp.server row"
            )
        if args.llama_server is not None:
            port2 = fixture.free_port()
            cmd2 = [str(args.llama_server), "-m", str(gguf), "-np", str(n), "-t", threads]
            cmd2 += ["-c", str(2048 * n), "--port", str(port2), "--host", "127.0.0.1"]
            url2 = f"http://127.0.0.1:{port2}"
            servers["llama-server (C++)"] = (
                lambda cmd=cmd2, url=url2: external(fixture, cmd, url, work / "llama_server.log"),
                "model",
            )
        for name, (start, model) in servers.items():
            with start() as url:
                asyncio.run(aggregate(url, model, n, args.num_predict, stream))  # warm-up
                one = [
                    asyncio.run(aggregate(url, model, 1, args.num_predict, stream))
                    for _ in range(args.runs)
                ]
                many = [
                    asyncio.run(aggregate(url, model, n, args.num_predict, stream))
                    for _ in range(args.runs)
                ]
            results[name] = (statistics.median(one), statistics.median(many))
    print(
        f"{gguf.name}, {args.threads} threads, {n} slots, {args.num_predict} tokens a request, "
        f"median of {args.runs}, {'streamed' if stream else 'whole answers'}; "
        f"cpu_count {os.cpu_count()}"
    )
    print(f"{'server':<22} {'1 client':>10} {f'{n} clients':>11} {'ratio':>7}   (tokens/s)")
    for name, (one, many) in results.items():
        print(f"{name:<22} {one:>10.1f} {many:>11.1f} {many / one:>6.2f}×")
    ours = results["modelkit (runners)"][1]
    for name, (_, many) in results.items():
        if not name.startswith("modelkit"):
            print(f"modelkit ÷ {name} at {n} clients: {ours / many:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
