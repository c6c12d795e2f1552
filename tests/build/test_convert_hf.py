"""FROM a Hugging Face safetensors folder: Ollama's file selection, conversion to an F16 GGUF
for llama (SentencePiece and Llama 3 tokenizers) / qwen2 / gemma / gemma3 (loads in llama.cpp,
same logits as a numpy forward pass of the original weights, same tokens as the original
tokenizer; with the real Qwen2.5 and Gemma 3 vocabularies when those GGUFs are installed), the
conversion cache, errors, ``modelkit build`` and ``/api/create`` end to end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from fixtures.cli import run_cli
from fixtures.tiny_hf import (
    CHATML_TEMPLATE,
    FAMILIES,
    GEMMA_TEMPLATE,
    LLAMA3_TEMPLATE,
    LLAMA_TEMPLATE,
    HFDims,
    byte_level_tokenizer_from_gguf,
    sentencepiece_tokenizer_from_gguf,
    write_bf16_safetensors,
    write_sentencepiece_model,
    write_tiny_hf,
)
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.build.convert import NO_FILES, convert_cached, converted_dir, select_files
from modelkit.build.convert import writer as convert_writer
from modelkit.build.convert.tensors import index_tensors, read
from modelkit.build.sources import FromRef, HFFolderSource
from modelkit.errors import BuildError
from modelkit.modelfile import parse_file
from modelkit.names import ModelName
from modelkit.store import (
    MEDIA_TYPE_MODEL,
    TEMP_PREFIX,
    Store,
    create_locked_temp,
    read_gguf_info,
    view_model,
)

TEXTS = [
    "Hello world!",
    "  leading spaces and  double  ",
    "digits 12345 and 3.14159, 2026-12-02",
    "Punctuation... (brackets) [x] {y}!? #1 @home 100%",
    "héllo wörld, naïve café 你好 👋",
    "line one\nline two\n\n\tindented",
    "I'm sure they're fine; we've done it",
]
SPECIAL_TEXTS = {
    "llama": ["<s>Hello</s>", "hi <s> there"],
    "llama3": ["<|begin_of_text|>Hi<|eot_id|>", "x<|end_of_text|> y"],
    "qwen2": ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "a<|endoftext|>b"],
    "gemma": ["<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "<bos>x<eos>"],
    "gemma3": ["<start_of_turn>user\nhéllo<end_of_turn>\n", "<bos>x<eos>"],
}
TEMPLATES = {
    "llama": LLAMA_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "qwen2": CHATML_TEMPLATE,
    "gemma": GEMMA_TEMPLATE,
    "gemma3": GEMMA_TEMPLATE,
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each family's HF folder and its conversion (into a store of this module)."""
    root = tmp_path_factory.mktemp("hf-convert")
    out = {}
    for family in FAMILIES:
        folder = write_tiny_hf(root / family, family)
        path, _ = convert_cached(select_files(folder), Store(root / "store"))
        out[family] = (folder, path)
    return out


def _fields(path: Path) -> dict[str, Any]:
    return dict(read_gguf_info(path, max_array_len=1 << 30).metadata)


# -- metadata (no llama.cpp needed) ----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_metadata_carries_tokenizer_template_and_hparams(
    converted: dict[str, tuple[Path, Path]], family: str
) -> None:
    folder, path = converted[family]
    fields = _fields(path)
    config = json.loads((folder / "config.json").read_text())
    arch = "llama" if family == "llama3" else family
    assert fields["general.architecture"] == arch
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert fields[f"{arch}.block_count"] == config["num_hidden_layers"]
    assert fields[f"{arch}.embedding_length"] == config["hidden_size"]
    assert fields[f"{arch}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields["tokenizer.chat_template"] == TEMPLATES[family]
    tokens = fields["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == config["vocab_size"]
    tconfig = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokens[fields["tokenizer.ggml.eos_token_id"]] == tconfig["eos_token"]
    # Llama 3 says it in its post-processor, the others in tokenizer_config.json.
    assert fields["tokenizer.ggml.add_bos_token"] is tconfig.get("add_bos_token", True)
    assert fields["tokenizer.ggml.add_eos_token"] is False
    if family in ("qwen2", "llama3"):
        assert fields["tokenizer.ggml.model"] == "gpt2"
        assert fields["tokenizer.ggml.pre"] == ("qwen2" if family == "qwen2" else "llama-bpe")
        assert len(fields["tokenizer.ggml.merges"]) > 100
        bos = "<|endoftext|>" if family == "qwen2" else "<|begin_of_text|>"
        assert tokens[fields["tokenizer.ggml.bos_token_id"]] == bos
        control = fields["tokenizer.ggml.token_type"][tokens.index(tconfig["eos_token"])]
        assert control == gguf.TokenType.CONTROL
    else:
        assert fields["tokenizer.ggml.model"] == "llama"
        assert fields["tokenizer.ggml.add_space_prefix"] is (family == "llama")
        assert tokens[fields["tokenizer.ggml.bos_token_id"]] == tconfig["bos_token"]
        types = fields["tokenizer.ggml.token_type"]
        assert types[tokens.index("<0x41>")] == gguf.TokenType.BYTE
    if family.startswith("gemma"):
        assert tokens[fields["tokenizer.ggml.eot_token_id"]] == "<end_of_turn>"
    reader = gguf.GGUFReader(path)
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert kinds["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert ("output.weight" in kinds) is family.startswith("llama")  # the others tie it


def test_gemma_norms_get_the_plus_one_offset(converted: dict[str, tuple[Path, Path]]) -> None:
    folder, path = converted["gemma"]
    original = load_file(str(folder / "model.safetensors"))["model.norm.weight"]
    reader = gguf.GGUFReader(path)
    norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
    np.testing.assert_allclose(np.asarray(norm.data), original.astype(np.float32) + 1, rtol=1e-6)


def test_gemma3_multimodal_checkpoint_converts_its_text_model(tmp_path: Path) -> None:
    text = write_tiny_hf(tmp_path / "text", "gemma3")
    multi = tmp_path / "multi"
    shutil.copytree(text, multi)
    weights = load_file(str(text / "model.safetensors"))
    renamed = {"language_model." + k: v for k, v in weights.items()}
    renamed["vision_tower.vision_model.embeddings.patch_embedding.weight"] = np.zeros(
        (8, 3, 2, 2), np.float16
    )
    renamed["multi_modal_projector.mm_input_projection_weight"] = np.zeros((8, 8), np.float16)
    save_file(renamed, str(multi / "model.safetensors"))
    config = json.loads((text / "config.json").read_text())
    outer = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"}
    (multi / "config.json").write_text(json.dumps({**outer, "text_config": config}))
    want = gguf.GGUFReader(_convert(text, tmp_path / "store"))
    got = gguf.GGUFReader(_convert(multi, tmp_path / "store"))
    assert [t.name for t in got.tensors] == [t.name for t in want.tensors]
    for a, b in zip(got.tensors, want.tensors, strict=True):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    assert got.fields["general.architecture"].contents() == "gemma3"


def test_bf16_tensors_are_widened_exactly(tmp_path: Path) -> None:
    values = np.array([[1.0, -2.5, 3.140625], [0.0, 1e-3, -65504.0]], dtype=np.float32)
    write_bf16_safetensors(tmp_path / "model.safetensors", {"w": values})
    ref = index_tensors((tmp_path / "model.safetensors",))["w"]
    got = read(ref)
    assert ref.dtype == "BF16" and got.dtype == np.float32 and got.shape == (2, 3)
    truncated = (values.view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(got, truncated)


# -- file selection (Ollama's TestFilesForModel, the safetensors cases) -----------------------


def _touch(folder: Path, *names: str, data: bytes = b"{}") -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _keys(folder: Path) -> list[str]:
    selection = select_files(folder)
    return sorted(selection.key(p) for p in selection.files)


def test_selects_shards_configs_and_chat_template(tmp_path: Path) -> None:
    names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
    ]
    _touch(tmp_path, *names)
    (tmp_path / "README.md").write_text("not selected")
    assert _keys(tmp_path) == sorted(names)


def test_selects_binary_tokenizer_model(tmp_path: Path) -> None:
    _touch(tmp_path, "model.safetensors", "config.json", "tokenizer.json")
    _touch(tmp_path, "tokenizer.model", data=b"\x0a\x00\x01\x02binary")
    assert _keys(tmp_path) == sorted(
        ["model.safetensors", "config.json", "tokenizer.json", "tokenizer.model"]
    )


def test_selects_sentence_transformers_one_level_down(tmp_path: Path) -> None:
    names = [
        "model.safetensors",
        "config.json",
        "modules.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "3_Dense/config.json",
        "3_Dense/model.safetensors",
    ]
    _touch(tmp_path, *names)
    assert _keys(tmp_path) == sorted(names)
    selection = select_files(tmp_path)
    assert [selection.key(p) for p in selection.top_weights] == ["model.safetensors"]


def test_consolidated_is_excluded_when_model_files_exist(tmp_path: Path) -> None:
    _touch(tmp_path, "model-00001-of-00001.safetensors", "consolidated.safetensors", "config.json")
    assert _keys(tmp_path) == ["config.json", "model-00001-of-00001.safetensors"]


def test_only_consolidated_is_selected(tmp_path: Path) -> None:
    _touch(tmp_path, "consolidated.safetensors", "config.json")
    assert _keys(tmp_path) == ["config.json", "consolidated.safetensors"]


def test_folder_without_weights_is_an_error(tmp_path: Path) -> None:
    _touch(tmp_path, "README.md", "config.json")
    with pytest.raises(BuildError, match=f"^{NO_FILES}$"):
        select_files(tmp_path)


def test_file_outside_the_folder_is_an_insecure_path(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    _touch(outside, "model.safetensors")
    folder = tmp_path / "model"
    _touch(folder, "config.json")
    (folder / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(BuildError, match=r"^insecure path: model.safetensors$"):
        select_files(folder)


def test_binary_json_is_an_invalid_content_type(tmp_path: Path) -> None:
    _touch(tmp_path, "model.safetensors")
    _touch(tmp_path, "config.json", data=b"\x00\x01\x02")
    with pytest.raises(BuildError, match=r"invalid content type: .* for config.json"):
        select_files(tmp_path)


# -- errors ----------------------------------------------------------------------------------


@pytest.fixture
def llama_dir(tmp_path: Path) -> Path:
    return write_tiny_hf(tmp_path / "llama", "llama", dtype="F32")


def _convert(folder: Path, store_root: Path) -> Path:
    return convert_cached(select_files(folder), Store(store_root))[0]


def test_unsupported_architecture_is_named(llama_dir: Path, tmp_path: Path) -> None:
    config = json.loads((llama_dir / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (llama_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match='unsupported architecture "GPT2LMHeadModel"'):
        _convert(llama_dir, tmp_path / "store")


def test_missing_config_json_is_explained(llama_dir: Path, tmp_path: Path) -> None:
    (llama_dir / "config.json").unlink()
    with pytest.raises(BuildError, match=r"config.json not found"):
        _convert(llama_dir, tmp_path / "store")


def test_missing_tensors_are_named(llama_dir: Path, tmp_path: Path) -> None:
    weights = load_file(str(llama_dir / "model.safetensors"))
    del weights["model.layers.1.self_attn.k_proj.weight"]
    save_file(weights, str(llama_dir / "model.safetensors"))
    with pytest.raises(BuildError, match=r"missing tensors .*blk\.1\.attn_k\.weight"):
        _convert(llama_dir, tmp_path / "store")


def test_unreadable_tokenizer_model_is_explained(llama_dir: Path, tmp_path: Path) -> None:
    (llama_dir / "tokenizer.json").unlink()
    (llama_dir / "tokenizer.model").write_bytes(b"\x0a\x05pie")
    with pytest.raises(BuildError, match=r"tokenizer\.model: not a readable SentencePiece"):
        _convert(llama_dir, tmp_path / "store")


def test_no_tokenizer_is_explained(llama_dir: Path, tmp_path: Path) -> None:
    (llama_dir / "tokenizer.json").unlink()
    with pytest.raises(BuildError, match=r"no tokenizer\.json or tokenizer\.model"):
        _convert(llama_dir, tmp_path / "store")


def test_a_single_safetensors_file_points_at_its_folder(store: Store, llama_dir: Path) -> None:
    modelfile = llama_dir.parent / "Modelfile"
    modelfile.write_text("FROM ./llama/model.safetensors\n")
    with pytest.raises(BuildError, match=r"single safetensors file .* FROM the folder"):
        plan_build(parse_file(modelfile), store, BuildCache.for_store(store.root))


# -- the cache -------------------------------------------------------------------------------


@pytest.fixture
def store(ollama_models: Path) -> Store:
    return Store(ollama_models)


def test_second_conversion_of_the_same_inputs_is_a_cache_hit(llama_dir: Path, store: Store) -> None:
    before = convert_writer.CONVERSIONS
    first, hit = convert_cached(select_files(llama_dir), store)
    assert not hit and before + 1 == convert_writer.CONVERSIONS
    assert first.parent == converted_dir(store.root)
    second = HFFolderSource(store).resolve(FromRef("./llama", llama_dir)).files[0].path
    assert second == first and before + 1 == convert_writer.CONVERSIONS
    # A changed input is a new key and a new conversion.
    config = json.loads((llama_dir / "config.json").read_text())
    (llama_dir / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    third, hit = convert_cached(select_files(llama_dir), store)
    assert not hit and third != first and before + 2 == convert_writer.CONVERSIONS


def test_progress_is_reported_while_hashing_and_converting(llama_dir: Path, store: Store) -> None:
    events: list[dict[str, object]] = []
    HFFolderSource(store, progress=events.append).resolve(FromRef("./llama", llama_dir))
    hashing = [e for e in events if e["status"] == "hashing model files"]
    converting = [e for e in events if e["status"] == "converting model"]
    assert len(hashing) + len(converting) == len(events)
    inputs = sum(p.stat().st_size for p in select_files(llama_dir).files)
    assert hashing[-1]["completed"] == hashing[-1]["total"] == inputs
    weights = sum(p.stat().st_size - 8 - _header_size(p) for p in llama_dir.glob("*.safetensors"))
    assert converting[-1]["completed"] == converting[-1]["total"] == weights
    events.clear()  # the second time: nothing to hash (stamps cached), nothing to convert
    HFFolderSource(store, progress=events.append).resolve(FromRef("./llama", llama_dir))
    assert events == []


def _header_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


# -- llama.cpp -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp_module() -> Any:
    return pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("family", FAMILIES)
def test_converted_model_loads_generates_and_matches_reference_logits(
    converted: dict[str, tuple[Path, Path]], family: str, llama_cpp_module: Any
) -> None:
    from fixtures.hf_reference import reference_logits

    folder, path = converted[family]
    llm = llama_cpp_module.Llama(
        model_path=str(path), n_ctx=64, logits_all=True, n_threads=1, verbose=False
    )
    try:
        tokens = llm.tokenize(b"Hello world, the sky is blue", add_bos=False)
        llm.reset()
        llm.eval(tokens)
        got = np.asarray(llm.scores[: len(tokens)])
        ref = reference_logits(folder, tokens)
        # F16 weights: close, not equal.
        assert np.abs(got - ref).max() < 0.02 * np.abs(ref).max()
        assert (got.argmax(-1) == ref.argmax(-1)).all()
        out = llm("Hello", max_tokens=4, temperature=0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_round_trips_through_llama_cpp(
    converted: dict[str, tuple[Path, Path]], family: str, llama_cpp_module: Any
) -> None:
    from tokenizers import Tokenizer

    folder, path = converted[family]
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    llm = llama_cpp_module.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for text in TEXTS + SPECIAL_TEXTS[family]:
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ids == reference.encode(text, add_special_tokens=False).ids, text
            back = llm.detokenize(ids, special=True).decode()
            if text in TEXTS:
                # Llama's SentencePiece tokenizer adds a leading space, as the original does.
                assert back == (" " + text if family == "llama" else text), text
            else:
                assert all(s in back for s in ("<", ">")), back
    finally:
        llm.close()


@pytest.mark.slow
def test_real_qwen_vocabulary_converts_as_llama_cpp_does(
    qwen_gguf: Path, tmp_path: Path, llama_cpp_module: Any
) -> None:
    """Qwen2.5's real 151k vocabulary (taken from its llama.cpp-made GGUF into a
    tokenizer.json) comes out with the same tokens, types and merges, and tokenizes the same."""
    tokenizer = byte_level_tokenizer_from_gguf(qwen_gguf)
    dims = HFDims(n_layers=1, hidden=32, heads=2, kv_heads=1, intermediate=32, vocab_size=151936)
    folder = write_tiny_hf(tmp_path / "qwen", "qwen2", dims=dims, tokenizer=tokenizer, shards=1)
    path = _convert(folder, tmp_path / "store")
    ours, real = _fields(path), _fields(qwen_gguf)
    for key in ("tokens", "token_type", "merges", "model", "pre", "eos_token_id", "bos_token_id"):
        assert ours[f"tokenizer.ggml.{key}"] == real[f"tokenizer.ggml.{key}"], key
    assert ours["tokenizer.chat_template"] == real["tokenizer.chat_template"]
    reference = tokenizer[0]
    llm = llama_cpp_module.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        texts = TEXTS + SPECIAL_TEXTS["qwen2"] + ["<tool_call>{}</tool_call>", "x = 1_000_000"]
        for text in texts:
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ids == reference.encode(text, add_special_tokens=False).ids, text
    finally:
        llm.close()


@pytest.mark.slow
def test_real_gemma3_vocabulary_tokenizes_as_the_real_gguf(
    gemma_gguf: Path, tmp_path: Path, llama_cpp_module: Any
) -> None:
    """Gemma 3's real 262k SentencePiece vocabulary, as a tokenizer.json (merges from its
    scores, as transformers makes them): the converted GGUF, whose scores come from those
    merges, tokenizes like the tokenizer.json and like llama.cpp's own Gemma 3 GGUF."""
    tokenizer = sentencepiece_tokenizer_from_gguf(gemma_gguf)
    dims = HFDims(n_layers=1, hidden=32, heads=2, kv_heads=1, intermediate=32, vocab_size=262144)
    folder = write_tiny_hf(tmp_path / "gemma", "gemma3", dims=dims, tokenizer=tokenizer)
    path = _convert(folder, tmp_path / "store")
    ours = llama_cpp_module.Llama(model_path=str(path), vocab_only=True, verbose=False)
    real = llama_cpp_module.Llama(model_path=str(gemma_gguf), vocab_only=True, verbose=False)
    texts = TEXTS + SPECIAL_TEXTS["gemma3"] + ["def f(x):\n    return x**2  # 平方\n\n\n"]
    try:
        for text in texts:
            ids = ours.tokenize(text.encode(), add_bos=False, special=True)
            assert ids == tokenizer[0].encode(text, add_special_tokens=False).ids, text
            assert ids == real.tokenize(text.encode(), add_bos=False, special=True), text
    finally:
        ours.close()
        real.close()


def test_sentencepiece_tokenizer_model_alone_converts(
    converted: dict[str, tuple[Path, Path]], tmp_path: Path, llama_cpp_module: Any
) -> None:
    """A folder with tokenizer.model and no tokenizer.json: the pieces, scores and types go
    to the GGUF as they are and tokenize as the original tokenizer does."""
    from tokenizers import Tokenizer

    original, gguf_path = converted["llama"]
    fields = _fields(gguf_path)
    folder = tmp_path / "spm"
    shutil.copytree(original, folder)
    (folder / "tokenizer.json").unlink()
    special = {"unk": 0, "bos": 1, "eos": 2}
    write_sentencepiece_model(
        folder / "tokenizer.model",
        fields["tokenizer.ggml.tokens"],
        fields["tokenizer.ggml.scores"],
        fields["tokenizer.ggml.token_type"],
        special=special,
        add_dummy_prefix=True,
    )
    path = _convert(folder, tmp_path / "store")
    ours = _fields(path)
    for key in ("tokens", "scores", "token_type", "bos_token_id", "add_space_prefix"):
        assert ours[f"tokenizer.ggml.{key}"] == fields[f"tokenizer.ggml.{key}"], key
    reference = Tokenizer.from_file(str(original / "tokenizer.json"))
    llm = llama_cpp_module.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for text in TEXTS + SPECIAL_TEXTS["llama"]:
            ids = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ids == reference.encode(text, add_special_tokens=False).ids, text
    finally:
        llm.close()


@pytest.mark.slow
def test_real_gemma3_tokenizer_model_converts_as_llama_cpp_does(
    gemma_gguf: Path, tmp_path: Path, llama_cpp_module: Any
) -> None:
    """Gemma 3's real SentencePiece pieces as a tokenizer.model: the same tokens, scores and
    types as llama.cpp's own GGUF, and the same tokens for every text."""
    real = _fields(gemma_gguf)
    dims = HFDims(n_layers=1, hidden=32, heads=2, kv_heads=1, intermediate=32, vocab_size=262144)
    folder = write_tiny_hf(tmp_path / "gemma", "gemma3", dims=dims)
    (folder / "tokenizer.json").unlink()
    ids = {k: real[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos")}
    special = {**ids, "unk": real["tokenizer.ggml.unknown_token_id"], "pad": 0}
    write_sentencepiece_model(
        folder / "tokenizer.model",
        real["tokenizer.ggml.tokens"],
        real["tokenizer.ggml.scores"],
        real["tokenizer.ggml.token_type"],
        special=special,
        add_dummy_prefix=False,
    )
    tconfig = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tconfig))
    path = _convert(folder, tmp_path / "store")
    ours = _fields(path)
    for key in ("tokens", "scores", "token_type", "add_space_prefix", "add_bos_token"):
        assert ours[f"tokenizer.ggml.{key}"] == real[f"tokenizer.ggml.{key}"], key
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"):
        assert ours[f"tokenizer.ggml.{key}"] == real[f"tokenizer.ggml.{key}"], key
    mine = llama_cpp_module.Llama(model_path=str(path), vocab_only=True, verbose=False)
    theirs = llama_cpp_module.Llama(model_path=str(gemma_gguf), vocab_only=True, verbose=False)
    try:
        for text in TEXTS + SPECIAL_TEXTS["gemma3"]:
            got = mine.tokenize(text.encode(), add_bos=False, special=True)
            assert got == theirs.tokenize(text.encode(), add_bos=False, special=True), text
    finally:
        mine.close()
        theirs.close()


# -- builds ----------------------------------------------------------------------------------


def test_build_from_folder_twice_converts_once(store: Store, tmp_path: Path) -> None:
    write_tiny_hf(tmp_path / "qwen", "qwen2")
    (tmp_path / "Modelfile").write_text("FROM ./qwen\nPARAMETER temperature 0\n")
    before = convert_writer.CONVERSIONS
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(tmp_path / "Modelfile"), store, cache)
    first = execute_build(plan, ModelName.parse("conv:1"), store, cache)
    plan = plan_build(parse_file(tmp_path / "Modelfile"), store, cache)
    second = execute_build(plan, ModelName.parse("conv:2"), store, cache)
    assert before + 1 == convert_writer.CONVERSIONS
    assert plan.layers[0].status == "cached"
    # The second build found the conversion in the store: the copy under .modelkit is gone.
    assert plan.layers[0].path is not None and plan.layers[0].path.parent == store.root / "blobs"
    assert list(converted_dir(store.root).glob("*.gguf")) == []
    digests = [r.stored.manifest.layers[0].digest for r in (first, second)]
    assert digests[0] == digests[1]
    layer = first.stored.manifest.layers[0]
    assert layer.media_type == MEDIA_TYPE_MODEL and layer.from_ is None
    assert plan.config.model_family == "qwen2" and plan.config.file_type == "F16"


def test_modelkit_build_end_to_end_then_the_engine_answers(
    ollama_models: Path, tmp_path: Path, llama_cpp_module: Any
) -> None:
    from modelkit.runtime import LoadedModel, load_params, resolve_options

    write_tiny_hf(tmp_path / "project" / "hf-gemma", "gemma3")
    (tmp_path / "project" / "Modelfile").write_text(
        "FROM ./hf-gemma\nPARAMETER num_ctx 256\nSYSTEM Be brief.\n"
    )
    code, out, err = run_cli("build", "-f", str(tmp_path / "project" / "Modelfile"), "-t", "hfg")
    assert code == 0, err
    assert out.startswith("hfg:latest ") and "success" in err
    view = view_model(Store(ollama_models), ModelName.parse("hfg"))
    assert view.model is not None and view.config.model_family == "gemma3"
    blob = Store(ollama_models).blob_path(view.model.digest)
    model = LoadedModel(
        blob, load=load_params(resolve_options(None, {"num_ctx": 256, "num_thread": 1}))
    )
    try:
        chunks = list(
            model.generate("hello", resolve_options(None, {"temperature": 0, "num_predict": 3}))
        )
    finally:
        model.close()
    assert chunks[-1].done and chunks[-1].stats is not None and chunks[-1].stats.eval_count >= 1


def test_api_create_converts_uploaded_safetensors(store: Store, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from modelkit.config import Settings
    from modelkit.server import create_app

    folder = write_tiny_hf(tmp_path / "qwen", "qwen2")
    client = TestClient(create_app(Settings.from_env()), base_url="http://127.0.0.1:11434")
    files = {}
    for path in sorted(folder.iterdir()):
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert client.post(f"/api/blobs/{digest}", content=path.read_bytes()).status_code in (
            200,
            201,
        )
        files[path.name] = digest
    before = convert_writer.CONVERSIONS
    reply = client.post("/api/create", json={"model": "fromst", "files": files, "stream": False})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": "success"}
    assert before + 1 == convert_writer.CONVERSIONS
    view = view_model(store, ModelName.parse("fromst"))
    assert view.model is not None and view.config.model_family == "qwen2"
    # The temporary folder of links is gone; the conversion stays cached for the next create.
    assert [
        p.name for p in (store.root / ".modelkit").iterdir() if p.name.startswith("safetensors-")
    ] == []
    reply = client.post("/api/create", json={"model": "fromst2", "files": files, "stream": False})
    assert reply.status_code == 200 and before + 1 == convert_writer.CONVERSIONS
    # streamed, a conversion shows its progress before the layers, as Ollama's does
    config = json.loads((folder / "config.json").read_bytes())
    changed = json.dumps({**config, "rms_norm_eps": 1e-5}).encode()
    digest = "sha256:" + hashlib.sha256(changed).hexdigest()
    assert client.post(f"/api/blobs/{digest}", content=changed).status_code == 201
    reply = client.post(
        "/api/create", json={"model": "fromst3", "files": {**files, "config.json": digest}}
    )
    lines = [json.loads(line) for line in reply.text.splitlines()]
    statuses = [line["status"] for line in lines]
    assert "converting model" in statuses and statuses[-1] == "success"
    converting = [line for line in lines if line["status"] == "converting model"]
    assert converting[-1]["completed"] == converting[-1]["total"] > 0
    assert before + 2 == convert_writer.CONVERSIONS
    bad = {**files, "config.json": files["tokenizer.json"]}  # not a config: fails converting
    lines = client.post("/api/create", json={"model": "fromst4", "files": bad}).text.splitlines()
    assert "error" in json.loads(lines[-1])


def test_store_folder_is_left_clean(llama_dir: Path, store: Store) -> None:
    convert_cached(select_files(llama_dir), store)
    leftovers = [p for p in converted_dir(store.root).iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not any(store.root.glob("blobs/*"))


def test_a_killed_conversion_leaves_nothing_for_long(llama_dir: Path, store: Store) -> None:
    folder = converted_dir(store.root)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f"{TEMP_PREFIX}999-convert-dead"  # its writer is gone: no lock
    stale.write_bytes(b"half a GGUF")
    os.utime(stale, (1, 1))
    fd, live = create_locked_temp(folder, label="convert-")  # a conversion under way
    os.utime(live, (1, 1))
    try:
        convert_cached(select_files(llama_dir), store)
        assert not stale.exists() and live.exists()
    finally:
        os.close(fd)
        live.unlink()
    assert [p for p in folder.iterdir() if p.name.startswith(".")] == []
