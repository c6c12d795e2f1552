"""Fixtures shared by the whole test suite (their code lives in tests/fixtures/).

* ``tiny_gguf``          session: a tiny random-weight llama GGUF (ChatML template), Path.
* ``tiny_gguf_factory``  function: ``make(name=None, **write_tiny_gguf_kwargs) -> Path``.
* ``tiny_lora_gguf``     session: a LoRA adapter GGUF matching ``tiny_gguf``, Path.
* ``tiny_projector_gguf`` session: a llava-style mmproj GGUF for ``tiny_gguf`` (16 image
                         tokens of width 64), Path; images: ``fixtures.tiny_projector``.
* ``ollama_models``      function: an empty directory set as ``$OLLAMA_MODELS``, Path.
* ``qwen_gguf``          session: the real Qwen2.5-Coder-0.5B-Instruct Q4 GGUF (skips).
* ``gemma_gguf``         session: the real Gemma 3 270M Q4_K_M GGUF (skips).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # also works with --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from fixtures.real_models import gemma_gguf_path, qwen_gguf_path
from fixtures.tiny_gguf import CHATML_TEMPLATE, write_tiny_gguf, write_tiny_lora_gguf
from fixtures.tiny_projector import write_tiny_projector_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~450 KB llama GGUF (2 layers, 64-dim, ChatML template), written once per session."""
    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf"
    return write_tiny_gguf(path, chat_template=CHATML_TEMPLATE)


@pytest.fixture
def tiny_gguf_factory(tmp_path: Path) -> Callable[..., Path]:
    """``make(name=None, **kwargs)`` writes a variant of ``tiny_gguf`` and returns its path.

    ``name`` is a file name under tmp_path (default: a fresh one) or a full path.

    kwargs go to ``write_tiny_gguf`` (seed, n_layers, n_embd, file_type, chat_template,
    context_length, architecture, extra_metadata, ...); chat_template defaults to ChatML
    like ``tiny_gguf`` -- pass ``chat_template=None`` for a model without one.
    """
    counter = itertools.count()

    def make(name: str | Path | None = None, **kwargs: Any) -> Path:
        kwargs.setdefault("chat_template", CHATML_TEMPLATE)
        path = Path(name) if name is not None else Path(f"tiny-{next(counter)}.gguf")
        if not path.is_absolute():
            path = tmp_path / "tiny-models" / path
        return write_tiny_gguf(path, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_lora_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter GGUF (rank 4, attention weights) that llama.cpp applies to tiny_gguf."""
    return write_tiny_lora_gguf(tmp_path_factory.mktemp("tiny-lora") / "tiny-lora.gguf")


@pytest.fixture(scope="session")
def tiny_projector_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~120 KB vision projector (mmproj) GGUF that libmtmd loads next to tiny_gguf."""
    path = tmp_path_factory.mktemp("tiny-projector") / "tiny-mmproj.gguf"
    return write_tiny_projector_gguf(path)


@pytest.fixture
def ollama_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty model store directory, exported as $OLLAMA_MODELS for the test."""
    path = tmp_path / "ollama-models"
    path.mkdir()
    monkeypatch.setenv("OLLAMA_MODELS", str(path))
    return path


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4 GGUF (491 MB, ChatML template) from the pip packages."""
    path, reason = qwen_gguf_path()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """Gemma 3 270M Q4_K_M GGUF (base model, no chat template) from its pip package."""
    path, reason = gemma_gguf_path()
    if path is None:
        pytest.skip(reason)
    return path
