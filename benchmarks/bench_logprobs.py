#!/usr/bin/env python3
"""What ``logprobs`` costs: generation speed with log probabilities (and 5 or 20
alternatives per token) as ratios against the same generation without them, in one process
on the same model, prompt and settings.

    python benchmarks/bench_logprobs.py [--gguf PATH] [--runs N] [--num-predict N] [--threads N]

Default model: the real Qwen2.5-Coder-0.5B-Instruct GGUF from ``examples/fetch_models.py``
(exits 0 without measuring when it is not available). Greedy decoding, so every
configuration generates the same tokens; configurations run round-robin; each figure is the
median over ``--runs`` rounds of generated tokens / wall-clock seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared import add_model_arguments, model_to_measure

from modelkit.runtime.engine import LoadedModel

PROMPT = (
    "<|im_start|>user\nWrite a Python function that returns the n-th Fibonacci number."
    "<|im_end|>\n<|im_start|>assistant\n"
)
CONFIGS: dict[str, int | None] = {
    "no logprobs (baseline)": None,
    "logprobs": 0,
    "logprobs, top_logprobs 5": 5,
    "logprobs, top_logprobs 20": 20,
}


def tokens_per_second(model: LoadedModel, options: object, top: int | None) -> float:
    start = time.perf_counter()
    chunks = list(model.generate(PROMPT, options, top_logprobs=top))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    stats = chunks[-1].stats
    assert stats is not None
    if top is not None:
        assert sum(len(c.logprobs) for c in chunks) > 0
    return stats.eval_count / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, runs=5, num_predict=128)
    args = parser.parse_args(argv)
    gguf = model_to_measure(args.gguf)
    if gguf is None:
        return 0
    with LoadedModel(gguf) as model:
        options = model.resolve(
            {"num_predict": args.num_predict, "temperature": 0, "num_thread": args.threads}
        )
        speeds: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for top in CONFIGS.values():  # warm-up: the prompt lands in the KV cache
            tokens_per_second(model, options, top)
        for _ in range(args.runs):
            for name, top in CONFIGS.items():
                speeds[name].append(tokens_per_second(model, options, top))
    base = statistics.median(speeds["no logprobs (baseline)"])
    print(f"logprobs benchmark: {gguf.name}, median of {args.runs} rounds, greedy")
    for name, runs in speeds.items():
        median = statistics.median(runs)
        print(f"  {name:<28} {median / base:6.3f}× the baseline's tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
