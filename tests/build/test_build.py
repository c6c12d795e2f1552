"""Build tests: FROM sources, layer merge/inheritance, the build cache, pruning on rebuild."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.errors import BuildError
from modelkit.modelfile import parse, parse_file
from modelkit.names import ModelName
from modelkit.store import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Store,
    view_model,
)


def write_modelfile(folder: Path, text: str, name: str = "Modelfile") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def build(store: Store, modelfile: Path, tag: str, **kwargs: object):  # type: ignore[no-untyped-def]
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(modelfile), store, cache)
    return plan, execute_build(plan, ModelName.parse(tag), store, cache, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def store(ollama_models: Path) -> Store:
    return Store(ollama_models)


@pytest.fixture
def project(tmp_path: Path, tiny_gguf: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "tiny.gguf")
    return folder


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def layer_types(store: Store, tag: str) -> list[str]:
    return [x.media_type for x in store.read_manifest(ModelName.parse(tag)).manifest.layers]


def test_build_from_gguf_file_writes_ollama_layers(store: Store, project: Path) -> None:
    mf = write_modelfile(
        project,
        "FROM ./tiny.gguf\n"
        'TEMPLATE "{{ .System }} {{ .Prompt }}"\n'
        "SYSTEM Say hi!\n"
        "PARAMETER temperature 0.6\nPARAMETER stop <|endoftext|>\nPARAMETER top_k 10\n"
        "PARAMETER top_p 0.7\nLICENSE MIT\nMESSAGE user You run tests.\n",
    )
    _, result = build(store, mf, "tiny")
    manifest = result.stored.manifest
    assert [x.media_type for x in manifest.layers] == [
        MEDIA_TYPE_MODEL,
        MEDIA_TYPE_TEMPLATE,
        MEDIA_TYPE_SYSTEM,
        MEDIA_TYPE_LICENSE,
        MEDIA_TYPE_PARAMS,
        MEDIA_TYPE_MESSAGES,
    ]
    model = manifest.layers[0]
    assert model.digest == sha(project / "tiny.gguf")
    assert model.from_ == "tiny.gguf"
    assert store.blob_path(model.digest).read_bytes() == (project / "tiny.gguf").read_bytes()
    # Byte-exact encodings whose digests Ollama's own tests pin (see OLLAMA-REFERENCE §3.9).
    system = manifest.layers[2]
    assert system.digest == (
        "sha256:f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"
    )
    params = store.blob_path(manifest.layers[4].digest).read_bytes()
    assert params == (
        b'{"stop":["\\u003c|endoftext|\\u003e"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    )
    assert manifest.layers[4].digest.startswith("sha256:12f58bb7")
    messages = store.blob_path(manifest.layers[5].digest).read_bytes()
    assert messages == b'[{"role":"user","content":"You run tests."}]\n'
    config = json.loads(store.blob_path(manifest.config.digest).read_bytes())
    assert config["model_format"] == "gguf"
    assert config["model_family"] == "llama"
    assert config["model_families"] == ["llama"]
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    # The manifest file is what Ollama reads: its sha256 is the model's identity.
    raw = store.read_manifest(ModelName.parse("tiny")).raw
    assert result.stored.digest == hashlib.sha256(raw).hexdigest()


def test_same_inputs_give_same_digest(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM tiny.gguf\nSYSTEM hello\nPARAMETER num_ctx 256\n")
    _, first = build(store, mf, "a")
    _, second = build(store, mf, "b")
    assert first.stored.digest == second.stored.digest


def test_relative_paths_resolve_against_modelfile_folder(
    store: Store, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mf = write_modelfile(project / "sub", "FROM ../tiny.gguf\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, result = build(store, mf, "rel")
    assert result.stored.manifest.layers[0].digest == sha(project / "tiny.gguf")


def test_child_inherits_and_overrides_parent(store: Store, project: Path) -> None:
    base = write_modelfile(
        project,
        "FROM ./tiny.gguf\nTEMPLATE {{ .Prompt }}\nSYSTEM base system\n"
        "PARAMETER temperature 0.5\nPARAMETER stop A\nPARAMETER stop B\n"
        "LICENSE base license\nMESSAGE user hi\nMESSAGE assistant hello\n",
        "Base.modelfile",
    )
    build(store, base, "base")
    child = write_modelfile(
        project,
        "FROM base\nSYSTEM child system\nPARAMETER top_k 7\nPARAMETER stop C\n"
        "LICENSE child license\n",
        "Child.modelfile",
    )
    _, result = build(store, child, "child")
    view = view_model(store, ModelName.parse("child"))
    assert view.template == "{{ .Prompt }}"  # inherited
    assert view.system == "child system"  # replaced
    assert view.parameters == {"temperature": 0.5, "stop": ["C"], "top_k": 7}  # merged
    assert view.licenses == ["base license", "child license"]  # added up
    assert [m["content"] for m in view.messages] == ["hi", "hello"]  # inherited
    base_view = view_model(store, ModelName.parse("base"))
    assert view.model is not None and base_view.model is not None
    assert view.model.digest == base_view.model.digest  # weights shared, not copied
    assert view.parent_model == "base:latest"
    statuses = {x.media_type: x.status for x in result.layers}
    assert statuses[MEDIA_TYPE_MODEL] == "inherited"

    grandchild = write_modelfile(project, "FROM child\nMESSAGE user only this\n", "G.modelfile")
    build(store, grandchild, "grandchild")
    g = view_model(store, ModelName.parse("grandchild"))
    assert [m["content"] for m in g.messages] == ["only this"]  # replaced
    assert g.system == "child system"


def test_from_unknown_model_name_fails_clearly(store: Store, tmp_path: Path) -> None:
    mf = write_modelfile(tmp_path, "FROM nosuchmodel:1b\n")
    with pytest.raises(BuildError, match=r':1: FROM nosuchmodel:1b: model "nosuchmodel:1b"'):
        build(store, mf, "x")


def test_safetensors_folder_without_architecture_says_so(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    (folder / "config.json").write_text("{}")
    mf = write_modelfile(tmp_path, "FROM ./hf\n")
    with pytest.raises(BuildError, match=r"Modelfile:1: config\.json: no architectures listed"):
        build(store, mf, "x")


def test_from_folder_of_ggufs(store: Store, tmp_path: Path, tiny_gguf: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "model.gguf")
    mf = write_modelfile(tmp_path, "FROM ./weights\n")
    _, result = build(store, mf, "folder")
    layer = result.stored.manifest.layers[0]
    assert layer.media_type == MEDIA_TYPE_MODEL and layer.from_ == "model.gguf"


def test_non_gguf_file_is_rejected(store: Store, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a gguf at all")
    mf = write_modelfile(tmp_path, "FROM ./model.bin\n")
    with pytest.raises(BuildError, match="not in GGUF format"):
        build(store, mf, "x")


def test_adapter_layer(store: Store, project: Path, tiny_lora_gguf: Path) -> None:
    shutil.copy(tiny_lora_gguf, project / "lora.gguf")
    mf = write_modelfile(project, "FROM ./tiny.gguf\nADAPTER ./lora.gguf\n")
    build(store, mf, "withlora")
    assert layer_types(store, "withlora") == [MEDIA_TYPE_MODEL, MEDIA_TYPE_ADAPTER]


def test_adapter_that_is_not_a_lora_is_rejected(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nADAPTER ./tiny.gguf\n")
    with pytest.raises(BuildError, match="not a LoRA adapter"):
        build(store, mf, "x")


def test_rebuild_uses_cache_and_skips_hashing(
    store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nPARAMETER temperature 0.1\n")
    first_plan, _ = build(store, mf, "cached")
    assert first_plan.layers[0].status == "new"

    def no_hashing(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged GGUF must not be re-imported")

    monkeypatch.setattr(Store, "import_file", no_hashing)
    write_modelfile(project, "FROM ./tiny.gguf\nPARAMETER temperature 0.2\n")
    plan, result = build(store, mf, "cached")
    assert plan.layers[0].status == "cached"
    assert view_model(store, ModelName.parse("cached")).parameters == {"temperature": 0.2}
    assert result.stored.manifest.layers[0].digest == sha(project / "tiny.gguf")


def test_changed_file_is_rehashed(store: Store, project: Path, tiny_gguf_factory) -> None:  # type: ignore[no-untyped-def]
    mf = write_modelfile(project, "FROM ./tiny.gguf\n")
    build(store, mf, "m")
    tiny_gguf_factory(project / "tiny.gguf", seed=42)
    st = (project / "tiny.gguf").stat()
    os.utime(project / "tiny.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    plan, result = build(store, mf, "m")
    assert plan.layers[0].status == "new"
    assert result.stored.manifest.layers[0].digest == sha(project / "tiny.gguf")


def test_dry_run_plan_writes_nothing(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nSYSTEM hi\n")
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(mf), store, cache)
    assert [x.status for x in plan.layers] == ["new", "new"]
    assert plan.layers[0].digest is None and plan.layers[1].digest is not None
    assert not any(store.root.rglob("sha256-*"))
    assert store.list_models() == []


def test_rebuild_over_a_tag_prunes_its_old_blobs(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nSYSTEM first\n")
    _, first = build(store, mf, "p")
    old_system = first.stored.manifest.layers[1].digest
    write_modelfile(project, "FROM ./tiny.gguf\nSYSTEM second\n")
    _, second = build(store, mf, "p")
    assert not store.has_blob(old_system)
    assert store.has_blob(second.stored.manifest.layers[1].digest)
    assert second.removed_blobs and old_system in second.removed_blobs


def test_noprune_keeps_old_blobs(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nSYSTEM first\n")
    _, first = build(store, mf, "p")
    old_system = first.stored.manifest.layers[1].digest
    write_modelfile(project, "FROM ./tiny.gguf\nSYSTEM second\n")
    build(store, mf, "p", noprune=True)
    assert store.has_blob(old_system)


def test_draft_same_as_from_is_rejected(store: Store, project: Path) -> None:
    mf = write_modelfile(project, "FROM ./tiny.gguf\nDRAFT ./tiny.gguf\n")
    with pytest.raises(BuildError, match="DRAFT must not reference the same local path as FROM"):
        build(store, mf, "x")


def test_parse_from_string_uses_cwd(
    store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse("FROM tiny.gguf\n"), store, cache)
    assert plan.layers[0].path == (project / "tiny.gguf").resolve()


def test_from_missing_path_says_so(store: Store, tmp_path: Path) -> None:
    mf = write_modelfile(tmp_path, "FROM ./nothere.gguf\n")
    with pytest.raises(BuildError) as info:
        build(store, mf, "x")
    # Named like a syntax error: the Modelfile's path, the line, then the line itself.
    assert str(info.value) == (
        f"{mf}:1: FROM ./nothere.gguf: no such file or directory\n    FROM ./nothere.gguf"
    )


def test_interrupted_build_leaves_no_manifest_and_no_partial_blob(
    store: Store, tmp_path: Path, tiny_gguf_factory
) -> None:  # type: ignore[no-untyped-def]
    big = tiny_gguf_factory(tmp_path / "big.gguf", n_embd=256, n_layers=4)
    mf = write_modelfile(tmp_path, "FROM ./big.gguf\nSYSTEM s\n")
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(mf), store, cache)

    def crash(label: str, done: int, total: int) -> None:
        if 0 < done < total:
            raise KeyboardInterrupt  # the user pressed Ctrl+C mid-copy

    with pytest.raises(KeyboardInterrupt):
        execute_build(plan, ModelName.parse("crash"), store, cache, progress=crash)
    assert store.list_models() == []
    assert not store.has_blob(sha(big))
    leftovers = [p.name for p in (store.root / "blobs").iterdir() if p.name.startswith("sha256-")]
    assert all(len(name) == 71 for name in leftovers)  # only complete, named blobs remain
    _, result = build(store, mf, "crash")  # and the next build works
    assert result.stored.manifest.layers[0].digest == sha(big)


def _build_in_subprocess(args: tuple[str, str, str]) -> int:
    import subprocess
    import sys

    modelfile, tag, models = args
    env = {**os.environ, "OLLAMA_MODELS": models}
    cmd = [sys.executable, "-m", "modelkit", "build", "--quiet", "-f", modelfile, "-t", tag]
    return subprocess.run(cmd, env=env, capture_output=True, check=False).returncode


def test_concurrent_builds_into_one_store(store: Store, project: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for i in range(6):
        mf = write_modelfile(
            project, f"FROM ./tiny.gguf\nSYSTEM model {i % 3}\nPARAMETER seed {i}\n", f"M{i}"
        )
        jobs.append((str(mf), f"m{i % 4}", str(store.root)))
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(_build_in_subprocess, jobs))
    assert codes == [0] * 6
    models = store.list_models()
    assert sorted(m.name.model for m in models) == ["m0", "m1", "m2", "m3"]
    for m in models:
        for layer in [m.manifest.config, *m.manifest.layers]:
            assert store.verify_blob(layer.digest).digest == layer.digest


def test_requires_renderer_parser_go_to_config_and_inherit(store: Store, project: Path) -> None:
    base = write_modelfile(
        project, "FROM ./tiny.gguf\nREQUIRES v0.14\nRENDERER qwen3\nPARSER qwen3\n", "B"
    )
    _, result = build(store, base, "cfg")
    config = json.loads(store.blob_path(result.stored.manifest.config.digest).read_bytes())
    assert (config["requires"], config["renderer"], config["parser"]) == ("0.14", "qwen3", "qwen3")
    assert list(config)[-2:] == ["architecture", "os"]  # Ollama's field order
    child = write_modelfile(project, "FROM cfg\nPARSER other\n", "C")
    _, result = build(store, child, "cfg2")
    config = json.loads(store.blob_path(result.stored.manifest.config.digest).read_bytes())
    assert (config["requires"], config["renderer"], config["parser"]) == ("0.14", "qwen3", "other")


def test_template_syntax_error_fails_the_build(store: Store, project: Path) -> None:
    mf = write_modelfile(project, 'FROM ./tiny.gguf\nTEMPLATE """{{ if .System }}x"""\n')
    with pytest.raises(BuildError, match="template error: template: :1"):
        build(store, mf, "x")
    assert store.list_models() == []
