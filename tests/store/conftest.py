"""Fixtures for the store tests: a fresh store, the 68-byte minimal GGUF, a tiny real GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest
from storetest_helpers import minimal_gguf_bytes, write_tiny_gguf

from modelkit.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture
def minimal_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "minimal.gguf"
    path.write_bytes(minimal_gguf_bytes())
    return path


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")
