"""A vision model through the real server: ``/api/show``'s ``projector_info`` (the projector
GGUF's key/values) and ``vision`` capability, ``modelkit show``'s Projector section, and
``modelkit run`` sending an image path typed in the prompt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from fixtures.cli import run_cli
from fixtures.server import RunningServer, running_server
from fixtures.tiny_projector import tiny_image_bytes, write_tiny_projector_gguf
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store


@pytest.fixture
def vision_store(tiny_store: Store, tiny_gguf: Path, tiny_projector_gguf: Path) -> Store:
    """``tiny_store`` plus ``vision:latest``: the tiny model and a projector named plainly."""
    projector = tiny_store.root.parent / "tower.gguf"
    shutil.copy(tiny_projector_gguf, projector)
    cache = BuildCache.for_store(tiny_store.root)
    text = (
        f"FROM {tiny_gguf}\nFROM {projector}\n"
        "PARAMETER num_ctx 256\nPARAMETER num_predict 4\nPARAMETER num_thread 1\n"
    )
    plan = plan_build(parse(text), tiny_store, cache)
    execute_build(plan, ModelName.parse("vision"), tiny_store, cache)
    return tiny_store


@pytest.fixture
def vision_server(vision_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(vision_store.root, tmp_path) as running:
        yield running


def test_official_client_sees_vision_capability(vision_server: RunningServer) -> None:
    client = ollama.Client(host=vision_server.url)
    shown = client.show("vision")
    assert shown.capabilities == ["completion", "vision"]
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    # A model without a projector is not a vision model.
    assert "vision" not in (client.show("tiny").capabilities or [])


def test_projector_info_lists_the_projector_keys(vision_server: RunningServer) -> None:
    with httpx.Client(base_url=vision_server.url, timeout=30) as http:
        body = http.post("/api/show", json={"model": "vision"}).json()
        verbose = http.post("/api/show", json={"model": "vision", "verbose": True}).json()
        plain = http.post("/api/show", json={"model": "tiny"}).json()
    info = body["projector_info"]
    assert info["general.architecture"] == "clip"
    assert info["general.type"] == "mmproj"
    assert info["general.name"] == "tiny-test-projector"  # Ollama keeps it here
    assert info["clip.projector_type"] == "mlp"
    assert info["clip.has_vision_encoder"] is True
    assert info["clip.vision.embedding_length"] == 32
    assert info["clip.vision.projection_dim"] == 64
    assert info["general.parameter_count"] > 0
    assert len(info["clip.vision.image_mean"]) == 3  # short arrays are shown
    assert list(info) == sorted(info)
    # The model's own info is still the language model's.
    assert body["model_info"]["general.architecture"] == "llama"
    assert "general.name" not in body["model_info"]
    assert verbose["projector_info"] == info  # no array longer than 5 to elide
    assert "projector_info" not in plain  # omitempty, as in Ollama
    assert "FROM " in body["modelfile"] and body["modelfile"].count("\nFROM ") == 2


def test_projector_info_elides_long_arrays(
    tiny_store: Store, tiny_gguf: Path, tmp_path: Path
) -> None:
    # A projector with a long array (llava-1.6's grid pinpoints hold 10 numbers or more).
    pinpoints = [32, 64, 64, 32, 64, 64, 96, 32, 32, 96]
    projector = write_tiny_projector_gguf(
        tmp_path / "p.gguf", extra_metadata={"clip.vision.image_grid_pinpoints": pinpoints}
    )
    cache = BuildCache.for_store(tiny_store.root)
    plan = plan_build(parse(f"FROM {tiny_gguf}\nFROM {projector}\n"), tiny_store, cache)
    execute_build(plan, ModelName.parse("pinned"), tiny_store, cache)
    with (
        running_server(tiny_store.root, tmp_path) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        body = http.post("/api/show", json={"model": "pinned"}).json()
        verbose = http.post("/api/show", json={"model": "pinned", "verbose": True}).json()
    key = "clip.vision.image_grid_pinpoints"
    assert body["projector_info"][key] == []
    assert verbose["projector_info"][key] == pinpoints


def test_cli_show_prints_the_projector_section(vision_store: Store) -> None:
    code, text, _ = run_cli("show", "vision")
    assert code == 0, text
    assert "  Capabilities\n    completion\n    vision\n" in text
    projector = text.split("  Projector\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(None, 1)[0] for line in projector] == [
        "architecture",
        "parameters",
        "embedding",
        "dimensions",
    ]
    assert projector[0].split() == ["architecture", "clip"]
    assert projector[2].split() == ["embedding", "length", "32"]
    assert projector[3].split() == ["dimensions", "64"]
    # Sections in Ollama's order.
    assert text.index("  Model") < text.index("  Capabilities") < text.index("  Projector")
    plain = run_cli("show", "tiny")[1]
    assert "Projector" not in plain and "vision" not in plain


def test_cli_run_sends_a_typed_image_path(vision_server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(tiny_image_bytes())
    env = {**os.environ, "OLLAMA_HOST": vision_server.url}

    def run(model: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelkit", "run", model, "describe ./cat.png"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = run("vision")
    assert done.returncode == 0, done.stderr
    assert "Added image 'cat.png'" in done.stderr
    plain = run("tiny")  # no projector: the path is just text
    assert plain.returncode == 0, plain.stderr
    assert "Added image" not in plain.stderr
