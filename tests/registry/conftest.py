"""Registry fixtures: a real ``docker-registry`` and a store holding a built tiny model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.registry import RunningRegistry, registry_binary, running_registry
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

TINY_MODELFILE = (
    "FROM {path}\n"
    "SYSTEM You are terse.\n"
    "PARAMETER stop <|im_end|>\nPARAMETER temperature 0\n"
    "LICENSE MIT\nMESSAGE user hi\n"
)


def _require_registry() -> None:
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (apt-get install -y docker-registry)")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    """A fresh registry on a free loopback port, storage in tmp_path (no auth)."""
    _require_registry()
    with running_registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture
def source_store(tmp_path: Path, tiny_gguf: Path) -> Store:
    """A store holding ``tiny:latest`` built from the tiny GGUF."""
    local = tmp_path / "tiny.gguf"
    shutil.copy(tiny_gguf, local)
    store = Store(tmp_path / "source-models")
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse(TINY_MODELFILE.format(path=local)), store, cache)
    execute_build(plan, ModelName.parse("tiny"), store, cache)
    return store


@pytest.fixture
def empty_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "pulled-models")
