"""Helpers of the deploy tests: fixed fake model facts (golden files that never move with the
GGUF writer), specs built from them, and manifests read back from their YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from modelkit.deploy import (
    DeployOptions,
    DeploySpec,
    ModelFacts,
    dump_documents,
    generate,
    resolve,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("MODELKIT_UPDATE_GOLDEN") == "1"

PINNED = "sha256:" + "ab" * 32

# Shaped like Qwen2.5-0.5B-Instruct Q4_K_M: 24 layers, 14 heads, 2 KV heads of 64 dims.
FAKE_FACTS = ModelFacts(
    name="qwen-demo:latest",
    digest="sha256:" + "12" * 32,
    weights_bytes=397_807_936,
    total_bytes=397_821_000,
    architecture="qwen2",
    n_layer=24,
    n_head=14,
    kv_heads=(2,) * 24,
    key_length=64,
    value_length=64,
    n_vocab=151_936,
    context_length=32_768,
    parameters={"temperature": 0.7, "stop": ["<|im_end|>"]},
)


def make_spec(facts: ModelFacts = FAKE_FACTS, **options: Any) -> DeploySpec:
    options.setdefault("image", "registry.example.com/models/qwen-demo:1.0")
    return resolve(facts, DeployOptions(**options))


def manifests(target: str, spec: DeploySpec) -> list[dict[str, Any]]:
    """The documents of ``target``, dumped and read back as YAML (what kubectl would get)."""
    docs = generate(target, spec)
    return [d for d in yaml.safe_load_all(dump_documents([d.body for d in docs])) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def pod_spec_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs)["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
