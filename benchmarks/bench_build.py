#!/usr/bin/env python3
"""How long a rebuild takes when only a PARAMETER changed, as ratios against baselines
measured in the same process on the same GGUF.

    python benchmarks/bench_build.py [--gguf PATH] [--repeat N] [--synthetic-mb MB] [--no-cli]

Default GGUF: the real Qwen2.5-Coder-0.5B (491 MB) from ``examples/fetch_models.py`` when
it is available without installing anything, otherwise a generated random-weight GGUF of
about ``--synthetic-mb`` MB.  Everything runs in a temporary ``OLLAMA_MODELS`` directory
that is removed at the end.

Each step is the median of ``--repeat`` runs.  Nothing is dropped from the page cache: the
GGUF is read once before timing starts, so every step is measured with it warm in memory
(which favours the baselines, since they only read the file).

Steps (see benchmarks/README.md):

* ``sha256sum FILE``      the baseline: the least work a first build can do (one read + hash)
* ``cp FILE``             a second baseline: copying the file (no hash, no fsync)
* first build             fresh store and build cache: hash + copy the GGUF, write the layers
* rebuild, PARAMETER      same store, only a PARAMETER value changed (a new value every run)
* rebuild, no change      same store, same Modelfile
* CLI rebuild, PARAMETER  ``python -m modelkit build --quiet`` in a new process (start-up included),
                          with ``--no-check`` and with the default smoke check
* tiny GGUF rebuild       the PARAMETER rebuild again on a ~0.4 MB GGUF, to show the rebuild
                          time does not depend on the model size

The speed goal is a ratio: "rebuild after PARAMETER change / sha256sum" far below 1 and
"rebuild / first build" close to 0, whatever the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import load_module, qwen_gguf  # noqa: E402
from modelkit.build import BuildCache, BuildResult, execute_build, plan_build  # noqa: E402
from modelkit.modelfile import parse_file  # noqa: E402
from modelkit.names import ModelName  # noqa: E402
from modelkit.store import (  # noqa: E402
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    Descriptor,
    Store,
)

MODEL_NAME = "bench:latest"
TINY_GGUF = REPO / "tests" / "fixtures" / "tiny_gguf.py"


# --------------------------------------------------------------------------- helpers


def tiny_gguf_module() -> ModuleType:
    return load_module("modelkit_bench_tiny_gguf", TINY_GGUF)


def write_tiny_gguf(path: Path) -> Path:
    """The test suite's tiny GGUF (~0.4 MB, ChatML template)."""
    mod = tiny_gguf_module()
    result: Path = mod.write_tiny_gguf(path, chat_template=mod.CHATML_TEMPLATE)
    return result


def write_synthetic_gguf(path: Path, megabytes: int) -> Path:
    """A random-weight llama GGUF of roughly ``megabytes`` MB (f32, 1024-dim layers)."""
    mod = tiny_gguf_module()
    n_embd = 1024
    per_layer = 9 * n_embd * n_embd * 4  # q, o: n²; k, v: n²/2; gate, up, down: 2n² (f32)
    n_layers = max(1, round(megabytes * 1_000_000 / per_layer))
    result: Path = mod.write_tiny_gguf(
        path,
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=16,
        n_head_kv=8,
        chat_template=mod.CHATML_TEMPLATE,
        name="bench-synthetic",
    )
    return result


def write_modelfile(path: Path, gguf: Path, temperature: float | None) -> Path:
    lines = [f"FROM {gguf}"]
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature}")
    lines.append("PARAMETER stop <|im_end|>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build(store_root: Path, modelfile: Path, name: str = MODEL_NAME) -> BuildResult:
    """One build as ``modelkit build`` does it: open the store and cache, parse, plan, execute."""
    store = Store(store_root)
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(modelfile), store, cache)
    return execute_build(plan, ModelName.parse(name), store, cache)


def sha256sum(path: Path) -> str:
    out = subprocess.run(
        ["sha256sum", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[0]


def check_build(
    result: BuildResult,
    store_root: Path,
    *,
    digest: str,
    model_status: str,
    temperature: float | None,
) -> None:
    """Fail loudly if a timed build did not do what it claims (a benchmark of a no-op is
    worthless): right model digest, model layer new/cached as expected, parameters stored."""
    by_type = {layer.media_type: layer for layer in result.layers}
    model = by_type.get(MEDIA_TYPE_MODEL)
    if model is None or model.digest != f"sha256:{digest}":
        raise SystemExit(f"bad build: model layer {model} does not have digest sha256:{digest}")
    if model.status != model_status:
        raise SystemExit(f"bad build: model layer is {model.status!r}, expected {model_status!r}")
    check_params(Store(store_root), result.stored.manifest.layers, temperature)


def check_params(store: Store, layers: Sequence[Descriptor], temperature: float | None) -> None:
    params = [x for x in layers if x.media_type == MEDIA_TYPE_PARAMS]
    if len(params) != 1:
        raise SystemExit(f"bad build: {len(params)} params layers")
    stored = json.loads(store.blob_path(params[0].digest).read_bytes())
    if stored.get("temperature") != temperature:
        raise SystemExit(f"bad build: params {stored}, expected temperature {temperature}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_build(store_root: Path, modelfile: Path) -> tuple[float, BuildResult]:
    start = time.perf_counter()
    result = build(store_root, modelfile)
    return time.perf_counter() - start, result


def temperatures() -> Iterator[float]:
    """A different PARAMETER value for every rebuild, so no run finds its params blob."""
    n = 0
    while True:
        n += 1
        yield round(0.1 + n / 1000, 4)


@dataclass
class Row:
    label: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def fmt_ratio(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    if value >= 0.01:
        return f"{value:.3f}×"
    return f"{value:.5f}×"


def fmt_seconds(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


# --------------------------------------------------------------------------- the benchmark


def run(gguf: Path, repeat: int, work: Path, with_cli: bool) -> list[Row]:
    size = gguf.stat().st_size
    print(f"GGUF: {gguf} ({size / 1e6:,.1f} MB)", file=sys.stderr)

    # Warm the page cache once (untimed); every step below reads the file from memory.
    digest = sha256sum(gguf)

    rows: list[Row] = []

    def step(label: str, runs: list[float]) -> None:
        rows.append(Row(label, runs))
        print(f"  {label}: {', '.join(fmt_seconds(r) for r in runs)}", file=sys.stderr)

    step("sha256sum FILE (baseline)", [timed(lambda: sha256sum(gguf)) for _ in range(repeat)])

    copy = work / "copy.gguf"
    cp_runs = []
    for _ in range(repeat):
        cp_runs.append(timed(lambda: subprocess.run(["cp", str(gguf), str(copy)], check=True)))
        copy.unlink()
    step("cp FILE (copy baseline)", cp_runs)

    # First builds: a fresh store (and so a cold build cache) every run.  The last store is
    # kept for the rebuilds.
    modelfile = work / "Modelfile"
    temps = temperatures()
    first_runs = []
    store_root = work / "store-0"
    for i in range(repeat):
        if i:
            shutil.rmtree(store_root)
            store_root = work / f"store-{i}"
        t = next(temps)
        write_modelfile(modelfile, gguf, t)
        seconds, result = timed_build(store_root, modelfile)
        check_build(result, store_root, digest=digest, model_status="new", temperature=t)
        first_runs.append(seconds)
    step("first build (hash + copy into a fresh store)", first_runs)

    # Rebuilds that change only a PARAMETER: same store, warm build cache.
    param_runs = []
    for _ in range(repeat):
        t = next(temps)
        write_modelfile(modelfile, gguf, t)
        seconds, result = timed_build(store_root, modelfile)
        check_build(result, store_root, digest=digest, model_status="cached", temperature=t)
        param_runs.append(seconds)
    step("rebuild, PARAMETER changed", param_runs)

    same_runs = []
    for _ in range(repeat):
        seconds, result = timed_build(store_root, modelfile)
        check_build(result, store_root, digest=digest, model_status="cached", temperature=t)
        same_runs.append(seconds)
    step("rebuild, nothing changed", same_runs)

    if with_cli:
        env = {**os.environ, "OLLAMA_MODELS": str(store_root)}
        cmd = [sys.executable, "-m", "modelkit", "build", "--quiet", "-f", str(modelfile)]
        cmd += ["-t", MODEL_NAME]
        for extra, label in (
            (["--no-check"], "CLI rebuild, PARAMETER changed (new process, --no-check)"),
            ([], "CLI rebuild, PARAMETER changed (new process, smoke check: load + 4 tokens)"),
        ):
            cli_runs = []
            for _ in range(repeat):
                t = next(temps)
                write_modelfile(modelfile, gguf, t)
                start = time.perf_counter()
                subprocess.run(
                    cmd + extra,
                    check=True,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                cli_runs.append(time.perf_counter() - start)
                store = Store(store_root)
                stored = store.read_manifest(store.resolve_name(ModelName.parse(MODEL_NAME)))
                check_params(store, stored.manifest.layers, t)
            step(label, cli_runs)

    # The same PARAMETER rebuild on a ~0.4 MB GGUF: the time should not depend on size.
    tiny = write_tiny_gguf(work / "tiny.gguf")
    tiny_digest = sha256sum(tiny)
    tiny_store = work / "store-tiny"
    tiny_modelfile = work / "Modelfile.tiny"
    write_modelfile(tiny_modelfile, tiny, 0.1)
    build(tiny_store, tiny_modelfile)
    tiny_runs = []
    for _ in range(repeat):
        t = next(temps)
        write_modelfile(tiny_modelfile, tiny, t)
        seconds, result = timed_build(tiny_store, tiny_modelfile)
        check_build(result, tiny_store, digest=tiny_digest, model_status="cached", temperature=t)
        tiny_runs.append(seconds)
    step(f"rebuild, PARAMETER changed, tiny GGUF ({tiny.stat().st_size / 1e6:.1f} MB)", tiny_runs)
    return rows


def report(rows: list[Row], gguf: Path, repeat: int) -> str:
    by_label = {row.label.split(" (")[0].split(",")[0]: row for row in rows}
    base = by_label["sha256sum FILE"].median
    first = by_label["first build"].median
    size = gguf.stat().st_size
    width = max(len(r.label) for r in rows)
    lines = [
        f"modelkit build benchmark: {gguf.name} ({size / 1e6:,.1f} MB), "
        f"median of {repeat} run(s), page cache warm (file read once before timing)",
        "",
        f"{'step':<{width}}  {'/ sha256sum':>12}  {'/ first build':>13}  {'(median)':>11}",
        "-" * (width + 42),
    ]
    for row in rows:
        lines.append(
            f"{row.label:<{width}}  {fmt_ratio(row.median / base):>12}  "
            f"{fmt_ratio(row.median / first):>13}  {fmt_seconds(row.median):>11}"
        )
    rebuild = next(r for r in rows if r.label == "rebuild, PARAMETER changed").median
    lines += [
        "",
        f"first build / sha256sum:                      {fmt_ratio(first / base)}",
        f"rebuild after PARAMETER change / sha256sum:   {fmt_ratio(rebuild / base)}",
        f"rebuild after PARAMETER change / first build: {fmt_ratio(rebuild / first)}",
        f"rebuild after PARAMETER change is {first / rebuild:,.0f}× faster than first build "
        f"and {base / rebuild:,.0f}× faster than sha256sum",
    ]
    tiny = next((r for r in rows if r.label.startswith("rebuild, PARAMETER changed, tiny")), None)
    if tiny is not None:
        lines.append(
            f"rebuild after PARAMETER change, this GGUF / tiny GGUF: "
            f"{fmt_ratio(rebuild / tiny.median)} (1× = independent of model size)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="GGUF to build from (default: the Qwen GGUF)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per step (default: 5)")
    parser.add_argument(
        "--synthetic-mb",
        type=int,
        default=256,
        help="size of the generated GGUF used when no other is available (default: 256)",
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="use a generated GGUF even if Qwen is there"
    )
    parser.add_argument(
        "--no-cli", action="store_true", help="skip the `python -m modelkit build` step"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if shutil.which("sha256sum") is None or shutil.which("cp") is None:
        parser.error("sha256sum and cp (coreutils) are needed for the baselines")

    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as tmp:
        work = Path(tmp)
        gguf = args.gguf
        if gguf is None and not args.synthetic:
            gguf, why = qwen_gguf()
            if gguf is None:
                print(f"note: Qwen GGUF unavailable ({why})", file=sys.stderr)
        if gguf is None:
            print(f"generating a ~{args.synthetic_mb} MB GGUF", file=sys.stderr)
            gguf = write_synthetic_gguf(work / "synthetic.gguf", args.synthetic_mb)
        gguf = gguf.resolve()
        if not gguf.is_file():
            parser.error(f"no such file: {gguf}")
        # Builds get their store explicitly; the CLI step gets it through OLLAMA_MODELS.
        # Setting it here too keeps anything that reads it away from ~/.ollama.
        with _env("OLLAMA_MODELS", str(work / "ollama-models")):
            rows = run(gguf, args.repeat, work, with_cli=not args.no_cli)
        print(report(rows, gguf, args.repeat))
    return 0


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


if __name__ == "__main__":
    sys.exit(main())
