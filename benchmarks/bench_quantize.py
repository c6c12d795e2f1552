#!/usr/bin/env python3
"""How long ``modelkit build --quantize TYPE`` takes, as a ratio against reading the same file
once, both measured in this process on a generated random-weight F16 GGUF.

    python benchmarks/bench_quantize.py [--layers N] [--types Q4_K_M,Q8_0,...]

The GGUF (the test suite's tiny model with larger dimensions: 1024-wide, 4096 feed-forward,
``--layers`` blocks; ~30 MB of F16 weights per block, 150 MB by default) is written into a
temporary folder that is removed at the end. The baseline is one sha256 pass over it after
asking the kernel to drop it from the page cache (``posix_fadvise(DONTNEED)``): cold-ish.

For each type the build runs into a fresh store (nothing cached), then once more into the same
store (a cache hit). Columns: ``quantize s`` is llama.cpp's child process (from the first
``quantizing ...`` event to ``verifying conversion``), ``build s`` the whole build (hashing the
source, quantizing, verifying and importing the result, config and manifest); ``× read`` divides
each by the read time (seconds per GB over seconds per GB of the same file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import load_module  # noqa: E402
from modelkit.build import BuildCache, execute_build, plan_build  # noqa: E402
from modelkit.build.spec import spec_from_modelfile  # noqa: E402
from modelkit.modelfile import parse  # noqa: E402
from modelkit.names import ModelName  # noqa: E402
from modelkit.store import MEDIA_TYPE_MODEL, Store  # noqa: E402

TINY_GGUF = REPO / "tests" / "fixtures" / "tiny_gguf.py"
TYPES = ("F32", "BF16", "Q8_0", "Q4_K_S", "Q4_K_M")


def write_model(path: Path, layers: int) -> Path:
    mod = load_module("modelkit_bench_tiny_gguf", TINY_GGUF)
    f16 = mod.gguf.LlamaFileType.MOSTLY_F16
    made: Path = mod.write_tiny_gguf(
        path, n_layers=layers, n_embd=1024, n_head=16, n_head_kv=4, n_ff=4096, file_type=f16
    )
    return made


def read_seconds(path: Path) -> float:
    """One sha256 pass over ``path``, dropped from the page cache first."""
    with path.open("rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        start = time.perf_counter()
        h = hashlib.sha256()
        while chunk := f.read(8 << 20):
            h.update(chunk)
        return time.perf_counter() - start


@dataclass
class Run:
    quantize: float
    build: float
    size: int


def build(store: Store, source: Path, qtype: str) -> Run:
    marks: dict[str, float] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label.startswith("quantizing"):
            marks.setdefault("start", time.perf_counter())
        elif label == "verifying conversion":
            marks["end"] = time.perf_counter()

    start = time.perf_counter()
    cache = BuildCache.for_store(store.root)
    spec = replace(spec_from_modelfile(parse(f"FROM {source}\n")), quantize=qtype)
    plan = plan_build(spec, store, cache)
    result = execute_build(plan, ModelName.parse("bench"), store, cache, progress=progress)
    elapsed = time.perf_counter() - start
    layer = next(x for x in result.layers if x.media_type == MEDIA_TYPE_MODEL)
    quantize = marks["end"] - marks["start"] if "end" in marks else 0.0
    return Run(quantize, elapsed, layer.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=5, help="transformer blocks (~30 MB each)")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated types")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-quantize-") as tmp:
        source = write_model(Path(tmp) / "model-f16.gguf", args.layers)
        size = source.stat().st_size
        read = read_seconds(source)
        gb = size / 1e9
        print(f"source: F16 GGUF, {size / 1e6:.0f} MB, {os.cpu_count()} CPUs")
        print(f"read once (sha256, cold-ish): {read:.3f} s = {read / gb:.2f} s/GB")
        print()
        head = f"{'type':8} {'out MB':>7} {'quantize s':>10} {'× read':>7} {'build s':>8}"
        print(f"{head} {'× read':>7} {'cached s':>8}")
        for qtype in args.types.split(","):
            store = Store(Path(tmp) / f"store-{qtype}")
            first = build(store, source, qtype)
            again = build(store, source, qtype)
            print(
                f"{qtype:8} {first.size / 1e6:7.0f} {first.quantize:10.2f}"
                f" {first.quantize / read:7.2f} {first.build:8.2f} {first.build / read:7.2f}"
                f" {again.build:8.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
