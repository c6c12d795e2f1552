"""Fixtures of the validate tests: a folder with a Modelfile of the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

MODELFILE = "FROM {gguf}\nPARAMETER num_predict 8\nPARAMETER num_ctx 256\nPARAMETER num_thread 1\n"


@pytest.fixture
def project(tmp_path: Path, tiny_gguf: Path, ollama_models: Path) -> Path:
    """``tmp_path/project/Modelfile``: the tiny model, 8 tokens per answer, one thread."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Modelfile").write_text(MODELFILE.format(gguf=tiny_gguf), encoding="utf-8")
    return folder
