"""Model facts read from a real store (the tiny GGUF built from a Modelfile) and the sizing
rules on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import gguf
import pytest
from deploy_helpers import FAKE_FACTS, make_spec

from modelkit.deploy import estimate_resources, model_facts, startup_budget_seconds
from modelkit.deploy.sizing import RUNTIME_OVERHEAD
from modelkit.errors import DeployError
from modelkit.names import ModelName
from modelkit.store import Store


def test_facts_from_the_store(build_tiny: Callable[..., Store], tiny_gguf: Path) -> None:
    store = build_tiny()
    facts = model_facts(store, "tiny")
    assert facts.name == "tiny:latest"
    stored = store.read_manifest(store.resolve_name(ModelName.parse("tiny")))
    assert facts.digest == f"sha256:{stored.digest}"
    # What the gguf package's own reader says about the same file.
    reader = gguf.GGUFReader(tiny_gguf)
    arch = "llama"

    def field(key: str) -> int:
        return int(reader.fields[f"{arch}.{key}"].parts[-1][0])

    assert facts.architecture == arch
    assert facts.n_layer == field("block_count") == 2
    assert facts.n_head == field("attention.head_count")
    assert set(facts.kv_heads) == {field("attention.head_count_kv")}
    assert facts.key_length == field("embedding_length") // facts.n_head
    assert facts.n_vocab == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert facts.context_length == field("context_length")
    assert facts.weights_bytes == tiny_gguf.stat().st_size
    assert facts.total_bytes > facts.weights_bytes
    assert facts.parameters["stop"] == ["<|im_end|>"]


def test_model_num_ctx_is_used_and_not_contradicted(build_tiny: Callable[..., Store]) -> None:
    store = build_tiny(extra="PARAMETER num_ctx 1024\nPARAMETER num_thread 3\n")
    facts = model_facts(store, "tiny")
    spec = make_spec(facts)
    assert spec.resources.num_ctx == 1024
    assert spec.env["OLLAMA_CONTEXT_LENGTH"] == "1024"
    assert spec.resources.cpu == 3
    assert make_spec(facts, num_ctx=1024).resources.num_ctx == 1024
    with pytest.raises(DeployError, match="sets num_ctx 1024"):
        make_spec(facts, num_ctx=2048)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"model nope:latest is not in the store"):
        model_facts(Store(tmp_path / "empty"), "nope")
    with pytest.raises(DeployError, match="not a model name"):
        model_facts(Store(tmp_path / "empty"), "Bad Name!")


def test_memory_parts() -> None:
    r = estimate_resources(FAKE_FACTS, num_ctx=4096, parallel=1)
    assert r.weights_bytes == FAKE_FACTS.weights_bytes
    assert r.overhead_bytes == RUNTIME_OVERHEAD
    assert r.compute_bytes == 512 * 4 * (151_936 + 14 * 4096)
    assert r.memory_bytes % (1024 * 1024) == 0
    assert r.memory_bytes >= r.weights_bytes + r.kv_cache_bytes + r.compute_bytes + RUNTIME_OVERHEAD
    q8 = estimate_resources(FAKE_FACTS, num_ctx=4096, parallel=1, kv_cache_type="q8_0")
    assert q8.kv_cache_bytes < r.kv_cache_bytes


def test_per_layer_kv_heads_and_explicit_head_dims() -> None:
    facts = replace(FAKE_FACTS, kv_heads=(2, 0) * 12, key_length=128, value_length=96)
    r = estimate_resources(facts, num_ctx=1000, parallel=1)
    assert r.kv_cache_bytes == 1000 * 12 * 2 * (128 + 96) * 2


def test_startup_budget_grows_with_size() -> None:
    assert startup_budget_seconds(0) == 60
    assert startup_budget_seconds(5 * 10**9) > startup_budget_seconds(10**9) > 60


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": 0}, "--replicas"),
        ({"parallel": 0}, "--parallel"),
        ({"num_ctx": -1}, "--num-ctx"),
        ({"kube_version": "1.20"}, "too old"),
        ({"kube_version": "latest"}, "MAJOR.MINOR"),
        ({"image": "bad image"}, "not an image reference"),
        ({"image_digest": "sha256:1234"}, "not an image digest"),
        ({"image": "r/x@sha256:" + "0" * 64, "image_digest": "sha256:" + "1" * 64}, "another"),
        ({"model_source": "init"}, "needs --model-image"),
        ({"model_image": "r/m:1"}, "--model-image is for"),
        ({"autoscale": "cpu"}, "--autoscale"),
        ({"max_replicas": 1, "replicas": 2}, "below --replicas"),
        ({"name": "Bad_Name"}, "--name"),
        ({"namespace": "UPPER"}, "--namespace"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        make_spec(**options)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("tiny:latest", "tiny"),
        ("qwen2.5-coder:0.5b", "qwen2-5-coder-0-5b"),
        ("user/model:v1", "user-model-v1"),
        ("registry.example.com/team/model:latest", "registry-example-com-team-model"),
        ("7b:latest", "m-7b"),
    ],
)
def test_object_names(model: str, name: str) -> None:
    assert make_spec(replace(FAKE_FACTS, name=model)).name == name


def test_long_names_are_shortened() -> None:
    spec = make_spec(replace(FAKE_FACTS, name="a" * 80 + ":latest"))
    assert len(spec.name) <= 45
