#!/usr/bin/env python3
"""What batching parallel requests buys: aggregate generation speed of N requests running at
once in one model (N slots, as ``OLLAMA_NUM_PARALLEL=N``), their generation steps decoded
together by the engine's batcher (continuous batching), as ratios against one request alone.

    python benchmarks/bench_parallel.py [--gguf PATH] [--parallel N] [--runs N]
                                        [--num-predict N] [--threads N]

Default model: the real Qwen2.5-Coder-0.5B-Instruct GGUF from ``examples/fetch_models.py``
(exits 0 without measuring when it is not available). The ceiling rows decode the same N
sequences with nothing but ``llama_decode`` (one token of each per batch) and one native greedy
sampler step each: what the hardware allows, so ``engine ÷ ceiling`` reads the same on any
machine. Greedy decoding of N different prompts;
aggregate tokens/s = all generated tokens / wall-clock seconds from the first request's start
to the last one's end; each figure is the median over ``--runs`` rounds, configurations
run round-robin.
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared import add_model_arguments, model_to_measure

from modelkit.runtime.engine import Chunk, LoadedModel
from modelkit.runtime.engine.batcher import BatchEntry
from modelkit.runtime.engine.weights import internals, llama
from modelkit.runtime.options import load_params, resolve_options


def prompt(n: int) -> str:
    """A request whose answer is long (so every request runs its whole ``num_predict``)."""
    start = 100 * (n + 1)
    return (
        f"<|im_start|>user\nCount from {start} to {start + 300}, separated by commas."
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def aggregate_speed(model: LoadedModel, options: Any, prompts: list[str]) -> float:
    """Tokens/s of all ``prompts`` generated at the same time, as a runner runs them: queued
    together, their chunks taken on the batcher's thread (no reader thread wakes up)."""
    finished: queue.SimpleQueue[Chunk | BaseException] = queue.SimpleQueue()

    def emit(item: Chunk | BaseException) -> None:
        if isinstance(item, BaseException) or item.done:
            finished.put(item)

    gens = [model.prepare(text, options, emit) for text in prompts]
    start = time.perf_counter()
    with model.batcher.held():
        for gen in gens:
            model.submit(gen)
    count = 0
    for _ in prompts:
        item = finished.get()
        assert isinstance(item, Chunk) and item.stats is not None, item
        assert item.stats.done_reason == "length", "a request ended early"
        count += item.stats.eval_count
    return count / (time.perf_counter() - start)


def threaded_speed(model: LoadedModel, options: Any, prompts: list[str]) -> float:
    """:func:`aggregate_speed` with each request read through :meth:`LoadedModel.generate`
    by a thread of its own, which wakes up for every chunk."""
    counts: list[int] = []

    def run(text: str) -> None:
        chunks = list(model.generate(text, options))
        stats = chunks[-1].stats
        assert stats is not None and stats.done_reason == "length", "a request ended early"
        counts.append(stats.eval_count)

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def ceiling_speed(model: LoadedModel, n: int, steps: int) -> float:
    """The hardware's batching ceiling: aggregate tokens/s of ``n`` sequences that each decode
    one token per ``llama_decode`` (all ``n`` in one batch) and take one native greedy sampler
    step, with no Python engine around it (the model's own context, while its batcher is
    held)."""
    llama_cpp = llama()
    batcher = model.batcher
    ctx = batcher.ctx
    samplers = []
    with batcher.held():
        positions: list[int] = []
        nexts: list[int] = []
        for seq in range(n):  # the same prompts as the engine's requests
            tokens = model.tokenize(prompt(seq))
            llama_cpp.llama_memory_seq_rm(ctx.memory, seq, -1, -1)
            last = len(tokens) - 1
            batcher.decode([BatchEntry(t, i, seq, i == last) for i, t in enumerate(tokens)])
            sampler = internals().LlamaSampler()
            sampler.add_greedy()
            samplers.append(sampler)
            positions.append(len(tokens))
            nexts.append(sampler.sample(ctx, -1))
        start = time.perf_counter()
        for step in range(steps):
            batcher.decode(
                [BatchEntry(nexts[seq], positions[seq] + step, seq, True) for seq in range(n)]
            )
            nexts = [samplers[seq].sample(ctx, seq) for seq in range(n)]
        elapsed = time.perf_counter() - start
        batcher.slots.forget()  # the engine's prompt cache no longer holds what it did
    for sampler in samplers:
        sampler.close()
    return n * steps / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, runs=3, num_predict=64)
    parser.add_argument("--parallel", type=int, default=4, help="requests at once (default 4)")
    args = parser.parse_args(argv)
    gguf = model_to_measure(args.gguf)
    if gguf is None:
        return 0
    request = {"num_ctx": 1024, "num_thread": args.threads}
    load = dataclasses.replace(load_params(resolve_options(None, request)), n_seq_max=args.parallel)
    prompts = [prompt(i) for i in range(args.parallel)]
    with LoadedModel(gguf, load=load) as model:
        options = model.resolve({**request, "num_predict": args.num_predict, "temperature": 0})
        configs = {
            "1 request alone (baseline)": (aggregate_speed, prompts[:1]),
            f"{args.parallel} at once, batched steps": (aggregate_speed, prompts),
            f"{args.parallel} at once, a reader thread each": (threaded_speed, prompts),
        }
        speeds: dict[str, list[float]] = {name: [] for name in configs}
        ceiling_names = [
            "ceiling: raw decode, 1 sequence",
            f"ceiling: raw decode, {args.parallel} sequences",
        ]
        ceilings: dict[str, list[float]] = {name: [] for name in ceiling_names}
        for round_ in range(args.runs + 1):  # round 0 warms the prompt caches up
            for name, (measure, texts) in configs.items():
                speed = measure(model, options, texts)
                if round_:
                    speeds[name].append(speed)
            for name, n in zip(ceiling_names, (1, args.parallel), strict=True):
                ceilings[name].append(ceiling_speed(model, n, args.num_predict))
    base = statistics.median(speeds["1 request alone (baseline)"])
    print(
        f"parallel benchmark: {gguf.name}, {args.parallel} slots, {args.num_predict} tokens"
        f" each, {args.threads} threads, median of {args.runs} rounds"
    )
    for name, runs in {**speeds, **ceilings}.items():
        print(f"  {name:<40} {statistics.median(runs) / base:6.3f}× the baseline's tokens/s")
    batched = statistics.median(speeds[f"{args.parallel} at once, batched steps"])
    top = statistics.median(ceilings[ceiling_names[1]])
    alone = statistics.median(ceilings[ceiling_names[0]])
    print(
        f"  engine ÷ ceiling: 1 request {base / alone:.2f}×, "
        f"{args.parallel} at once {batched / top:.2f}×"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
