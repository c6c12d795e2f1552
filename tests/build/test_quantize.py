"""``build --quantize`` / ``/api/create`` ``quantize``: llama.cpp's quantizer in a child process,
its errors, its cache, and what the quantized models are (their header, and that they run)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
import httpx
import pytest

from fixtures.cli import run_cli
from fixtures.server import running_server
from fixtures.tiny_gguf import CHATML_TEMPLATE, write_tiny_gguf
from modelkit.build import BuildCache, BuildPlan, BuildResult, execute_build, plan_build
from modelkit.build import quantize as quantize_module
from modelkit.build.quantize import PROGRESS_DIGEST, parse_quant_type
from modelkit.build.quantize_child import FAULT_SETTING
from modelkit.build.spec import spec_from_modelfile
from modelkit.errors import BuildError
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import MEDIA_TYPE_MODEL, Descriptor, ModelConfig, Store, read_gguf_info

UNSUPPORTED = (
    "unsupported quantization type {} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"
)
ONLY_FLOAT = "quantization is only supported for F16, BF16 and F32 models"
# K-quants need rows of 256: every matrix of this model has 256 or 512 columns.
DIMS: dict[str, Any] = {"n_layers": 1, "n_embd": 256, "n_head": 4, "n_head_kv": 2, "n_ff": 512}
PROGRESS = list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An F32 and an F16 model (~3 and ~1.5 MB) that K-quants really apply to."""
    folder = tmp_path_factory.mktemp("quantize-sources")
    made = {}
    for name, file_type in (
        ("F32", gguf.LlamaFileType.ALL_F32),
        ("F16", gguf.LlamaFileType.MOSTLY_F16),
    ):
        made[name] = write_tiny_gguf(
            folder / f"{name}.gguf", file_type=file_type, chat_template=CHATML_TEMPLATE, **DIMS
        )
    return made


@pytest.fixture(autouse=True)
def _no_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULT_SETTING, raising=False)


@pytest.fixture
def llama() -> Any:
    return pytest.importorskip("llama_cpp")


def new_store(root: Path) -> Store:
    root.mkdir(parents=True, exist_ok=True)
    return Store(root)


def plan(store: Store, text: str, quantize: str | None) -> BuildPlan:
    spec = replace(spec_from_modelfile(parse(text)), quantize=quantize)
    return plan_build(spec, store, BuildCache.for_store(store.root))


def build(
    store: Store, text: str, quantize: str | None, tag: str = "q", progress: PROGRESS | None = None
) -> BuildResult:
    cache = BuildCache.for_store(store.root)
    spec = replace(spec_from_modelfile(parse(text)), quantize=quantize)
    planned = plan_build(spec, store, cache)
    report = None if progress is None else lambda *event: progress.append(event)
    return execute_build(planned, ModelName.parse(tag), store, cache, progress=report)


def model_layer(result: BuildResult) -> Descriptor:
    return next(x for x in result.stored.manifest.layers if x.media_type == MEDIA_TYPE_MODEL)


def config_of(store: Store, result: BuildResult) -> ModelConfig:
    return ModelConfig.from_bytes(store.read_blob(result.stored.manifest.config.digest))


def files_under(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def assert_runs(path: Path, llama: Any) -> None:
    """llama.cpp loads the model and generates tokens with it (whatever they say)."""
    model = llama.Llama(model_path=str(path), n_ctx=128, n_threads=1, verbose=False)
    try:
        out = model.create_completion("Hello world", max_tokens=3, temperature=0)
        assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] >= 1
    finally:
        model.close()


# -- types, errors and the no-op (no llama.cpp needed) ------------------------------------------


def test_types_are_case_insensitive_with_the_q4_k_alias() -> None:
    assert parse_quant_type("q4_k_m").name == "Q4_K_M"
    assert parse_quant_type("Q4_K").name == "Q4_K_M"
    assert parse_quant_type("bf16").name == "BF16"
    assert [parse_quant_type(t).file_type for t in ("f32", "f16", "q8_0", "q4_k_s")] == [
        0,
        1,
        7,
        14,
    ]


@pytest.mark.parametrize("wanted", ["q2_k", "Q4_0", "int8", ""])
def test_an_unsupported_type_is_ollamas_error(
    ollama_models: Path, sources: dict[str, Path], wanted: str
) -> None:
    with pytest.raises(BuildError) as err:
        plan(Store(ollama_models), f"FROM {sources['F16']}\n", wanted or " ")
    assert str(err.value) == UNSUPPORTED.format(wanted or " ")


def test_a_quantized_source_is_ollamas_error(
    ollama_models: Path, tiny_gguf_factory: Callable[..., Path]
) -> None:
    q8 = tiny_gguf_factory(file_type=gguf.LlamaFileType.MOSTLY_Q8_0)
    with pytest.raises(BuildError) as err:
        plan(Store(ollama_models), f"FROM {q8}\n", "q4_k_m")
    assert str(err.value) == ONLY_FLOAT


def test_the_same_type_is_a_no_op(ollama_models: Path, sources: dict[str, Path]) -> None:
    store = Store(ollama_models)
    planned = plan(store, f"FROM {sources['F16']}\n", "f16")
    assert planned.quantize is None
    result = build(store, f"FROM {sources['F16']}\n", "F16")
    plain = build(store, f"FROM {sources['F16']}\n", None, tag="plain")
    assert model_layer(result) == model_layer(plain)
    assert config_of(store, result).file_type == "F16"
    assert not (ollama_models / ".modelkit" / "quantize").exists()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("segv", "signal 11 (SIGSEGV)"), ("exit", "exit status 3")],
)
def test_a_crashing_child_is_a_clean_error_and_leaves_nothing(
    ollama_models: Path,
    sources: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    expected: str,
) -> None:
    store = Store(ollama_models)
    monkeypatch.setenv(FAULT_SETTING, fault)
    with pytest.raises(BuildError) as err:
        build(store, f"FROM {sources['F32']}\n", "q8_0")
    message = str(err.value)
    assert message.startswith("quantizing to Q8_0 failed: llama.cpp's quantize process ended")
    assert expected in message
    if fault == "exit":
        assert "injected failure" in message  # the tail of its stderr
    for folder in ("blobs", "manifests", ".modelkit/quantize"):
        assert files_under(ollama_models / folder) == []


def test_a_corrupt_source_fails_in_the_child(
    ollama_models: Path, sources: dict[str, Path], tmp_path: Path, llama: Any
) -> None:
    broken = tmp_path / "broken.gguf"
    data = sources["F16"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # the header is whole, the tensors are not
    with pytest.raises(BuildError) as err:
        build(Store(ollama_models), f"FROM {broken}\n", "q8_0")
    assert "quantizing to Q8_0 failed" in str(err.value)
    assert files_under(ollama_models / ".modelkit" / "quantize") == []


def test_cli_refuses_a_bad_type_before_building(
    ollama_models: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {sources['F16']}\n", encoding="utf-8")
    code, _, err = run_cli("build", "-f", str(modelfile), "-t", "x", "-q", "q3_k_m")
    assert code == 1 and UNSUPPORTED.format("q3_k_m") in err and "Traceback" not in err
    code, out, _ = run_cli("build", "-f", str(modelfile), "-t", "x", "--dry-run", "-q", "q8_0")
    assert code == 0
    assert "quantize: F16 -> Q8_0, cache checked once the source is hashed" in out
    assert "config: llama" in out and " Q8_0 (" in out


# -- quantizing with llama.cpp ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "wanted", "kind"),
    [
        ("F16", "F32", "F32"),
        ("F32", "F16", "F16"),
        ("F32", "bf16", "BF16"),
        ("F32", "q8_0", "Q8_0"),
        ("F16", "q4_k_s", "Q4_K"),
        ("F16", "Q4_K", "Q4_K"),
    ],
)
def test_each_type_is_a_model_llama_cpp_runs(
    ollama_models: Path, sources: dict[str, Path], llama: Any, source: str, wanted: str, kind: str
) -> None:
    store = Store(ollama_models)
    events: PROGRESS = []
    result = build(store, f"FROM {sources[source]}\n", wanted, progress=events)
    target = parse_quant_type(wanted)
    layer = model_layer(result)
    assert layer.from_ == sources[source].name  # the layer's ``from`` stays the source's
    blob = store.blob_path(layer.digest)
    info = read_gguf_info(blob)
    assert (info.file_type_id or 0) == target.file_type
    matrices = {t.type_name for t in info.tensors if len(t.shape) >= 2}
    assert kind in matrices, matrices  # e.g. Q4_K really applied, no fallback
    assert config_of(store, result).file_type == ModelConfig.from_gguf(info).file_type
    if target.name != "F32":
        assert config_of(store, result).file_type == target.name
    assert_runs(blob, llama)

    status = f"quantizing {source} model to {target.name}"
    bars = [(done, total) for label, done, total in events if label == status]
    total = sources[source].stat().st_size
    assert bars[0] == (0, total) and bars[-1] == (total, total)
    assert [d for d, _ in bars] == sorted(d for d, _ in bars)
    assert ("verifying conversion", 0, 0) in events
    assert files_under(ollama_models / ".modelkit" / "quantize") == []
    assert not store.has_blob(sha256(sources[source]))  # the source itself is not copied in


def test_same_digest_in_two_stores_and_a_second_build_is_cached(
    tmp_path: Path, sources: dict[str, Path], llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f"FROM {sources['F16']}\n"
    one, two = new_store(tmp_path / "one"), new_store(tmp_path / "two")
    first = build(one, text, "q4_k_m")
    assert model_layer(first).digest == model_layer(build(two, text, "Q4_K_M")).digest
    assert [x.status for x in first.layers] == ["new"]

    # No child runs again: the child would now crash, and nothing else may be called.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FAULT_SETTING, "segv")
        runs: list[object] = []
        patch.setattr(quantize_module, "run_child", lambda *a: runs.append(a))
        planned = plan(one, text, "q4_k")
        assert planned.quantize is not None and planned.quantize.cached is not None
        assert planned.layers[0].status == "cached"
        again = build(one, text, "q4_k_m", tag="again")
    assert model_layer(again) == model_layer(first) and runs == []
    assert [x.status for x in again.layers] == ["cached"]
    assert config_of(one, again) == config_of(one, first)

    # A hit is valid only while its blob is in the store: gone, it is quantized again.
    for name in ("q", "again"):
        one.delete(ModelName.parse(name))
    assert not one.has_blob(model_layer(first).digest)
    third = build(one, text, "q4_k_m")
    assert model_layer(third).digest == model_layer(first).digest
    assert [x.status for x in third.layers] == ["new"]


def test_a_model_from_the_store_is_quantized_too(
    ollama_models: Path, sources: dict[str, Path], llama: Any
) -> None:
    store = Store(ollama_models)
    base = build(store, f"FROM {sources['F16']}\nSYSTEM be brief\n", None, tag="base")
    planned = plan(store, "FROM base\n", "q8_0").quantize
    assert planned is not None
    assert planned.describe() == "quantize: F16 -> Q8_0, not cached: llama.cpp will quantize it"
    child = build(store, "FROM base\nPARAMETER temperature 0\n", "q8_0", tag="child")
    layer = model_layer(child)
    assert layer.digest != model_layer(base).digest and layer.from_ == "base:latest"
    assert config_of(store, child).file_type == "Q8_0"
    assert read_gguf_info(store.blob_path(layer.digest)).file_type == "Q8_0"
    # The quantization of this source digest is cached, whichever way it is reached.
    direct = plan(store, f"FROM {sources['F16']}\n", "Q8_0")
    assert direct.quantize is not None and direct.quantize.cached is not None
    assert direct.quantize.cached.digest == layer.digest


def test_cli_build_q_q4_k_m(
    ollama_models: Path, sources: dict[str, Path], tmp_path: Path, llama: Any
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(sources["F16"], project / "model.gguf")
    (project / "Modelfile").write_text(
        "FROM ./model.gguf\nPARAMETER num_ctx 256\nPARAMETER num_predict 4\n", encoding="utf-8"
    )
    args = ("build", "-f", str(project / "Modelfile"), "-t", "small", "-q", "q4_k_m")
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert out.startswith("small:latest ") and "smoke check passed" in err
    assert "verifying conversion" in err and "creating new layer" in err
    store = Store(ollama_models)
    stored = store.read_manifest(ModelName.parse("small"))
    assert ModelConfig.from_bytes(store.read_blob(stored.manifest.config.digest)).file_type == (
        "Q4_K_M"
    )
    code, out, _ = run_cli(
        "build", "-f", str(project / "Modelfile"), "-t", "s", "--dry-run", "-q", "Q4_K_M"
    )
    assert code == 0 and "quantize: F16 -> Q4_K_M, cached (" in out
    code, _, err = run_cli(
        "create",
        "s2",
        "-f",
        str(project / "Modelfile"),
        "--quantize",
        "q4_k_m",
        "--quiet",
        "--no-check",
    )
    assert code == 0 and "verifying conversion" not in err  # a cache hit, and quiet


def test_api_create_quantizes_and_streams_ollamas_progress(
    ollama_models: Path, sources: dict[str, Path], tmp_path: Path, llama: Any
) -> None:
    store = Store(ollama_models)
    digest = store.import_file(sources["F32"]).digest
    files = {"model.gguf": digest}
    with running_server(ollama_models, tmp_path) as server:
        url = server.url + "/api/create"
        bad = httpx.post(url, json={"model": "x", "files": files, "quantize": "q5_k_m"})
        assert bad.status_code == 400 and bad.json() == {"error": UNSUPPORTED.format("q5_k_m")}

        with httpx.stream(
            "POST", url, json={"model": "m", "files": files, "quantize": "Q4_K_S"}, timeout=120
        ) as r:
            assert r.status_code == 200
            lines = [json.loads(line) for line in r.iter_lines() if line]
        bars = [x for x in lines if x.get("status") == "quantizing F32 model to Q4_K_S"]
        assert bars and all(x["digest"] == PROGRESS_DIGEST for x in bars)
        size = sources["F32"].stat().st_size
        assert bars[-1]["total"] == size and bars[-1]["completed"] == size
        statuses = [x["status"] for x in lines]
        assert statuses.index("verifying conversion") > statuses.index(bars[-1]["status"])
        assert statuses[-2:] == ["writing manifest", "success"]

        # ``quantization`` is the older spelling; stream false answers the last status only.
        same = httpx.post(
            url,
            json={"model": "m2", "files": files, "quantization": "q4_k_s", "stream": False},
            timeout=120,
        )
        assert same.status_code == 200 and same.json() == {"status": "success"}

        stored = store.read_manifest(ModelName.parse("m"))
        quantized = next(x for x in stored.manifest.layers if x.media_type == MEDIA_TYPE_MODEL)
        again = httpx.post(
            url, json={"model": "m3", "files": {"m.gguf": quantized.digest}, "quantize": "q8_0"}
        )
        assert again.status_code == 400 and again.json() == {"error": ONLY_FLOAT}
    m = store.read_manifest(ModelName.parse("m"))
    m2 = store.read_manifest(ModelName.parse("m2"))
    assert m.manifest.layers == m2.manifest.layers
    info = read_gguf_info(store.blob_path(quantized.digest))
    assert info.file_type == "Q4_K_S"
    assert os.listdir(ollama_models / ".modelkit" / "quantize") == []
    assert_runs(store.blob_path(quantized.digest), llama)

    # A server whose quantize child always crashes: a cached type still builds (no child), a
    # new one ends the stream with the error (stream false: a 400), and the server lives on.
    with running_server(ollama_models, tmp_path, env={FAULT_SETTING: "segv"}) as server:
        url = server.url + "/api/create"
        hit = {"model": "m4", "files": files, "quantize": "q4_k_s", "stream": False}
        assert httpx.post(url, json=hit, timeout=60).json() == {"status": "success"}
        crash = {"model": "m5", "files": files, "quantize": "q8_0"}
        lines = httpx.post(url, json=crash, timeout=60).text.splitlines()
        error = json.loads(lines[-1])["error"]
        assert "signal 11 (SIGSEGV)" in error and error.startswith("quantizing to Q8_0 failed")
        refused = httpx.post(url, json={**crash, "stream": False}, timeout=60)
        assert refused.status_code == 400 and "signal 11 (SIGSEGV)" in refused.json()["error"]
        assert httpx.get(server.url + "/api/tags").status_code == 200
    assert store.read_manifest(ModelName.parse("m4")).manifest.layers == m.manifest.layers
    assert os.listdir(ollama_models / ".modelkit" / "quantize") == []
