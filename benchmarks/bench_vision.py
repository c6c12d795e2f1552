#!/usr/bin/env python3
"""What an image costs in the engine, on the tiny test model and tiny projector the test suite
writes (random weights; the shapes of a real model are far bigger, the ratios are the point).

    python benchmarks/bench_vision.py [--runs N] [--size WxH] [--threads N]

Rows, each the median over ``--runs`` requests, as ratios in the same process:
- encode ÷ the whole request: the share of an image request's prompt time the projector takes;
- request with an image ÷ the same request without: prompt processing time;
- a second turn about the same image ÷ the first: the prompt cache holds the image (no
  encode, no decode of it);
- the same image in another prompt ÷ the first: its pixels and embeddings are kept, so only
  its decode is paid.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.tiny_gguf import CHATML_TEMPLATE, write_tiny_gguf
from fixtures.tiny_projector import tiny_image_bytes, write_tiny_projector_gguf
from modelkit.runtime.engine import LoadedModel
from modelkit.runtime.options import load_params, resolve_options

REQUEST: dict[str, Any] = {"num_ctx": 1024, "num_predict": 1, "temperature": 0}
PROMPT = "<|im_start|>user\n{tag}what is in this picture?<|im_end|>\n<|im_start|>assistant\n"


def prompt_seconds(model: LoadedModel, prompt: str, images: list[bytes]) -> float:
    """Seconds from submitting the request to its first token (the prompt's processing)."""
    options = model.resolve(REQUEST)
    started = time.perf_counter()
    for chunk in model.generate(prompt, options, images=images):
        if chunk.done:
            break
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--size", default="40x30", help="the input image's size (WxH)")
    parser.add_argument("--threads", type=int, default=1, help="num_thread (the tests use 1)")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    REQUEST["num_thread"] = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        gguf = write_tiny_gguf(Path(tmp) / "tiny.gguf", chat_template=CHATML_TEMPLATE)
        projector = write_tiny_projector_gguf(Path(tmp) / "mmproj.gguf")
        load = load_params(resolve_options(None, REQUEST))
        with LoadedModel(gguf, projector=projector, load=dataclasses.replace(load)) as model:
            return measure(model, args.runs, (width, height))


def measure(model: LoadedModel, runs: int, size: tuple[int, int]) -> int:
    vision = model.vision
    assert vision is not None
    first: list[float] = []
    again: list[float] = []
    elsewhere: list[float] = []
    text: list[float] = []
    encode: list[float] = []
    placing: list[float] = []
    tagged = PROMPT.format(tag="[img-0] ")
    for seed in range(runs):
        image = tiny_image_bytes(size=size, seed=100 + seed)

        def system(kind: str, seed: int = seed) -> str:
            # a different first line each time: no request reuses another's prompt cache
            return f"<|im_start|>system\n{kind} {seed}<|im_end|>\n"

        started = time.perf_counter()
        _, pieces = vision.tokenize(tagged, [image])  # decode the file, place the image
        placing.append(time.perf_counter() - started)
        for piece in pieces:
            piece.close()
        before = vision.stats.encode_ns
        first.append(prompt_seconds(model, system("first") + tagged, [image]))
        encode.append((vision.stats.encode_ns - before) / 1e9)
        again.append(prompt_seconds(model, system("first") + tagged, [image]))
        elsewhere.append(prompt_seconds(model, system("other") + tagged, [image]))
        text.append(prompt_seconds(model, system("text") + PROMPT.format(tag=""), []))
    base = median(text)
    rows: list[tuple[str, float]] = [
        ("projector encode ÷ a text-only request", median(encode) / base),
        ("decoding + placing the image ÷ a text-only request", median(placing) / base),
        ("a request with an image ÷ a text-only request", median(first) / base),
        ("second turn, same image ÷ first turn", median(again) / median(first)),
        ("same image, another prompt ÷ first turn", median(elsewhere) / median(first)),
    ]
    print(f"tiny model + tiny projector, {runs} runs, {size[0]}x{size[1]} images")
    for label, ratio in rows:
        print(f"  {label:<52} {ratio:6.2f}x")
    print(
        f"  (medians: encode {median(encode) * 1e3:.3f} ms, text-only request "
        f"{base * 1e3:.2f} ms; {vision.stats.encodes} encodes for {3 * runs} image requests)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
