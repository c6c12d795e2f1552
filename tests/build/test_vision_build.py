"""Vision builds: a projector GGUF beside the model becomes a projector layer, told apart by
its GGUF header (general.type / clip architecture), never by its file name."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.errors import BuildError
from modelkit.modelfile import parse_file
from modelkit.names import ModelName
from modelkit.store import (
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    Store,
    read_gguf_info,
    view_model,
)


@pytest.fixture
def store(ollama_models: Path) -> Store:
    return Store(ollama_models)


def build(store: Store, modelfile: Path, tag: str) -> list[tuple[str, str, str]]:
    """Build ``modelfile`` as ``tag``; the manifest's (media type, from, digest) rows."""
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(modelfile), store, cache)
    result = execute_build(plan, ModelName.parse(tag), store, cache)
    return [(x.media_type, x.from_ or "", x.digest) for x in result.stored.manifest.layers]


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_projector_fixture_is_detected_by_its_header(
    tmp_path: Path, tiny_gguf: Path, tiny_projector_gguf: Path
) -> None:
    # A name that says nothing about projectors: the header decides.
    renamed = tmp_path / "weights-2.gguf"
    shutil.copy(tiny_projector_gguf, renamed)
    info = read_gguf_info(renamed)
    assert info.is_projector and not info.is_adapter
    assert info.media_type_kind == "projector"
    assert info.architecture == "clip" and info.general_type == "mmproj"
    assert not read_gguf_info(tiny_gguf).is_projector


def test_two_froms_give_model_and_projector_layers(
    store: Store, tmp_path: Path, tiny_gguf: Path, tiny_projector_gguf: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "model.gguf")
    shutil.copy(tiny_projector_gguf, folder / "vision-tower.gguf")
    modelfile = folder / "Modelfile"
    modelfile.write_text("FROM ./model.gguf\nFROM ./vision-tower.gguf\nPARAMETER top_k 5\n")

    layers = build(store, modelfile, "vision:latest")
    assert layers == [
        (MEDIA_TYPE_MODEL, "model.gguf", digest_of(tiny_gguf)),
        (MEDIA_TYPE_PROJECTOR, "vision-tower.gguf", digest_of(tiny_projector_gguf)),
        (MEDIA_TYPE_PARAMS, "", layers[2][2]),
    ]
    view = view_model(store, ModelName.parse("vision"))
    assert [d.digest for d in view.projectors] == [digest_of(tiny_projector_gguf)]
    assert view.model is not None and view.model.digest == digest_of(tiny_gguf)
    # The config describes the language model, not the projector.
    assert view.config.model_family == "llama"


def test_projector_first_in_the_modelfile_is_still_the_projector(
    store: Store, tmp_path: Path, tiny_gguf: Path, tiny_projector_gguf: Path
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_projector_gguf}\nFROM {tiny_gguf}\n")
    kinds = {media: key for media, key, _ in build(store, modelfile, "vision2")}
    assert kinds == {MEDIA_TYPE_MODEL: tiny_gguf.name, MEDIA_TYPE_PROJECTOR: "tiny-mmproj.gguf"}


def test_folder_holding_model_and_projector(
    store: Store, tmp_path: Path, tiny_gguf: Path, tiny_projector_gguf: Path
) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    # Sorted keys put the projector first; the layer types must not depend on that.
    shutil.copy(tiny_projector_gguf, folder / "a.gguf")
    shutil.copy(tiny_gguf, folder / "b.gguf")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./weights\n")

    layers = build(store, modelfile, "folder-vision")
    assert [(media, key) for media, key, _ in layers] == [
        (MEDIA_TYPE_PROJECTOR, "a.gguf"),
        (MEDIA_TYPE_MODEL, "b.gguf"),
    ]
    view = view_model(store, ModelName.parse("folder-vision"))
    assert view.model is not None and view.model.digest == digest_of(tiny_gguf)
    assert len(view.projectors) == 1


def test_child_of_a_vision_model_keeps_its_projector(
    store: Store, tmp_path: Path, tiny_gguf: Path, tiny_projector_gguf: Path
) -> None:
    parent = tmp_path / "Modelfile.parent"
    parent.write_text(f"FROM {tiny_gguf}\nFROM {tiny_projector_gguf}\n")
    build(store, parent, "vision-parent")
    child = tmp_path / "Modelfile.child"
    child.write_text("FROM vision-parent\nSYSTEM You see.\n")
    layers = build(store, child, "vision-child")
    projector = [(key, digest) for media, key, digest in layers if media == MEDIA_TYPE_PROJECTOR]
    assert projector == [("vision-parent:latest", digest_of(tiny_projector_gguf))]


def test_projector_alone_is_not_a_model(
    store: Store, tmp_path: Path, tiny_projector_gguf: Path
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_projector_gguf}\n")
    with pytest.raises(BuildError, match="no model layer"):
        build(store, modelfile, "only-projector")
