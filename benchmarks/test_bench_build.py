"""pytest-benchmark timings of ``modelkit build`` on the test suite's tiny GGUF.

Run with ``pytest benchmarks/`` (the default ``pytest`` run collects ``tests/`` only).
These tests assert what each build did (which layers were new or cached), never how long it
took: the speed goal is checked by the ratios that ``bench_build.py`` prints.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _bench_build() -> ModuleType:
    """benchmarks/bench_build.py, imported by path (benchmarks/ is not a package)."""
    name = "modelkit_bench_build"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).with_name("bench_build.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench_build()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = bench.write_tiny_gguf(tmp_path_factory.mktemp("bench-gguf") / "tiny.gguf")
    return path, bench.sha256sum(path)


def _layer_status(result: Any) -> str:
    status: str = next(x.status for x in result.layers if x.media_type == bench.MEDIA_TYPE_MODEL)
    return status


def test_first_build(benchmark: Any, tmp_path: Path, tiny_gguf: tuple[Path, str]) -> None:
    """A build into a fresh store: hash + copy the GGUF, write every layer."""
    gguf, digest = tiny_gguf
    modelfile = bench.write_modelfile(tmp_path / "Modelfile", gguf, 0.5)
    stores = (tmp_path / f"store-{i}" for i in itertools.count())
    previous: list[Path] = []

    def setup() -> tuple[tuple[Path, Path], dict[str, Any]]:
        for old in previous:
            shutil.rmtree(old, ignore_errors=True)
        previous[:] = [next(stores)]
        return (previous[0], modelfile), {}

    result = benchmark.pedantic(bench.build, setup=setup, rounds=20, warmup_rounds=1)
    bench.check_build(result, previous[0], digest=digest, model_status="new", temperature=0.5)


def test_rebuild_after_parameter_change(
    benchmark: Any, tmp_path: Path, tiny_gguf: tuple[Path, str]
) -> None:
    """Same store, only a PARAMETER changed (a new value every round): no re-hash, no copy."""
    gguf, digest = tiny_gguf
    store_root = tmp_path / "store"
    modelfile = bench.write_modelfile(tmp_path / "Modelfile", gguf, 0.1)
    bench.build(store_root, modelfile)
    temps = bench.temperatures()
    current: list[float] = []

    def setup() -> tuple[tuple[Path, Path], dict[str, Any]]:
        current[:] = [next(temps)]
        bench.write_modelfile(modelfile, gguf, current[0])
        return (store_root, modelfile), {}

    result = benchmark.pedantic(bench.build, setup=setup, rounds=50, warmup_rounds=1)
    assert _layer_status(result) == "cached"
    bench.check_build(
        result, store_root, digest=digest, model_status="cached", temperature=current[0]
    )


def test_rebuild_without_change(
    benchmark: Any, tmp_path: Path, tiny_gguf: tuple[Path, str]
) -> None:
    """Same store, same Modelfile: every layer is already there."""
    gguf, digest = tiny_gguf
    store_root = tmp_path / "store"
    modelfile = bench.write_modelfile(tmp_path / "Modelfile", gguf, 0.2)
    bench.build(store_root, modelfile)

    result = benchmark.pedantic(
        bench.build, args=(store_root, modelfile), rounds=50, warmup_rounds=1
    )
    bench.check_build(result, store_root, digest=digest, model_status="cached", temperature=0.2)
