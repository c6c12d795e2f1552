"""Deploy fixtures: the tiny model built into a store from a Modelfile."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

MODELFILE = "FROM {path}\nSYSTEM You are terse.\nPARAMETER stop <|im_end|>\n{extra}"


@pytest.fixture
def build_tiny(tmp_path: Path, tiny_gguf: Path) -> Callable[..., Store]:
    """``build(name="tiny", extra="")`` → the store at $OLLAMA_MODELS-like ``tmp/models``
    holding the tiny GGUF built from a Modelfile (``extra``: more instructions)."""

    def build(name: str = "tiny", extra: str = "") -> Store:
        local = tmp_path / "src" / "tiny.gguf"
        if not local.exists():
            local.parent.mkdir(parents=True)
            shutil.copy(tiny_gguf, local)
        store = Store(tmp_path / "models")
        cache = BuildCache.for_store(store.root)
        plan = plan_build(parse(MODELFILE.format(path=local, extra=extra)), store, cache)
        execute_build(plan, ModelName.parse(name), store, cache)
        return store

    return build
