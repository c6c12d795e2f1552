"""Server fixtures: a store with a built tiny model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.server import RunningServer, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

TINY_MODELFILE = (
    "FROM {path}\n"
    "SYSTEM You are terse.\n"
    "PARAMETER stop <|im_end|>\nPARAMETER temperature 0\n"
    # Random weights never stop by themselves: keep generations and contexts short.
    "PARAMETER num_predict 16\nPARAMETER num_ctx 256\nPARAMETER num_thread 1\n"
    "LICENSE MIT\nMESSAGE user hi\n"
)


@pytest.fixture
def tiny_store(ollama_models: Path, tiny_gguf: Path, tmp_path: Path) -> Store:
    """``$OLLAMA_MODELS`` holding ``tiny:latest`` built from the tiny GGUF."""
    local = tmp_path / "tiny.gguf"
    shutil.copy(tiny_gguf, local)
    store = Store(ollama_models)
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse(TINY_MODELFILE.format(path=local)), store, cache)
    execute_build(plan, ModelName.parse("tiny"), store, cache)
    return store


@pytest.fixture
def server(tiny_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    """A real ``modelkit serve`` process over ``tiny_store`` on a free loopback port."""
    with running_server(tiny_store.root, tmp_path) as running:
        yield running
