"""FROM a safetensors folder with ``--quantize``: converted and quantized in one build, both
steps cached, and the result loads and generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.cli import run_cli
from fixtures.tiny_hf import HFDims, write_tiny_hf
from modelkit.build.convert import writer as convert_writer
from modelkit.names import ModelName
from modelkit.store import Store, read_gguf_info, view_model

# K-quants work on rows of 256 values: wide enough that llama.cpp does not fall back.
DIMS = HFDims(hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512)


@pytest.mark.parametrize(("family", "kind"), [("qwen2", "Q8_0"), ("llama", "Q4_K_M")])
def test_a_safetensors_folder_is_converted_and_quantized_in_one_build(
    ollama_models: Path, tmp_path: Path, family: str, kind: str
) -> None:
    pytest.importorskip("llama_cpp")
    from modelkit.runtime import LoadedModel, load_params, resolve_options

    write_tiny_hf(tmp_path / "hf", family, dims=DIMS)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./hf\nPARAMETER num_ctx 256\n")
    before = convert_writer.CONVERSIONS
    code, _, err = run_cli("build", "-f", str(modelfile), "-t", "hfq", "-q", kind.lower())
    assert code == 0, err
    assert convert_writer.CONVERSIONS - before == 1
    store = Store(ollama_models)
    view = view_model(store, ModelName.parse("hfq"))
    assert view.model is not None and view.config.file_type == kind
    blob = store.blob_path(view.model.digest)
    assert read_gguf_info(blob).file_type == kind
    # again: nothing is converted or quantized, the same layer comes out
    code, _, err = run_cli("build", "-f", str(modelfile), "-t", "hfq:2", "-q", kind)
    assert code == 0, err
    assert convert_writer.CONVERSIONS - before == 1
    again = view_model(store, ModelName.parse("hfq:2"))
    assert again.model is not None and again.model.digest == view.model.digest
    load = load_params(resolve_options(None, {"num_ctx": 256, "num_thread": 1}))
    with LoadedModel(blob, load=load) as model:
        options = resolve_options(None, {"temperature": 0, "num_predict": 3})
        chunks = list(model.generate("hello", options))
    assert chunks[-1].done and chunks[-1].stats is not None
    assert chunks[-1].stats.eval_count >= 1
