"""Manifest and config blob encoding (reference §3.2–3.4, §3.9)."""

from __future__ import annotations

import hashlib
import json

import pytest
from storetest_helpers import MINIMAL_GGUF_SHA256, minimal_gguf_bytes

from modelkit.errors import StoreError
from modelkit.store import (
    ALL_LAYER_MEDIA_TYPES,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TENSOR,
    Descriptor,
    Manifest,
    ModelConfig,
    manifest_digest,
    read_gguf_info,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def sample_manifest() -> Manifest:
    return Manifest(
        config=Descriptor(MEDIA_TYPE_CONFIG, D1, 150),
        layers=[
            Descriptor(MEDIA_TYPE_MODEL, D2, 68, from_="minimal.gguf"),
            Descriptor(MEDIA_TYPE_SYSTEM, D3, 7),
            Descriptor(MEDIA_TYPE_TENSOR, D3, 7, name="model.layers.0.weight"),
        ],
    )


def test_media_types() -> None:
    assert MEDIA_TYPE_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert MEDIA_TYPE_CONFIG == "application/vnd.docker.container.image.v1+json"
    suffixes = {t.rsplit(".", 1)[1] for t in ALL_LAYER_MEDIA_TYPES}
    assert suffixes == {
        "model", "projector", "adapter", "draft", "template", "prompt", "system",
        "params", "messages", "license", "embed", "tensor", "json",
    }  # fmt: skip


def test_manifest_bytes_in_ollama_order() -> None:
    raw = sample_manifest().to_bytes()
    assert raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        b'"digest":"' + D1.encode() + b'","size":150},"layers":['
        b'{"mediaType":"application/vnd.ollama.image.model","digest":"' + D2.encode()
        + b'","size":68,"from":"minimal.gguf"},'
        b'{"mediaType":"application/vnd.ollama.image.system","digest":"' + D3.encode()
        + b'","size":7},'
        b'{"mediaType":"application/vnd.ollama.image.tensor","digest":"' + D3.encode()
        + b'","size":7,"name":"model.layers.0.weight"}]}\n'
    )  # fmt: skip
    assert sample_manifest().digest() == hashlib.sha256(raw).hexdigest() == manifest_digest(raw)
    assert Manifest.from_bytes(raw) == sample_manifest()


def test_manifest_reading_is_tolerant() -> None:
    m = sample_manifest()
    obj = m.to_json_obj()
    # Reordered, pretty printed, extra fields (OCI annotations), as a registry may send.
    reordered = {
        "layers": [dict(reversed(list(x.items())), annotations={"a": "b"}) for x in obj["layers"]],
        "config": obj["config"],
        "mediaType": obj["mediaType"],
        "schemaVersion": 2,
        "extra": [1, 2, 3],
    }
    raw = json.dumps(reordered, indent=3).encode()
    assert Manifest.from_bytes(raw) == m
    assert (
        Manifest.from_bytes(b'{"config":' + json.dumps(obj["config"]).encode() + b"}").layers == []
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"config": 3}',
        b'{"config": {"digest": "sha256:abc", "size": 1}}',
        b'{"config": {"digest": "sha256:' + b"1" * 64 + b'", "size": -1}}',
        b'{"config": {"digest": "sha256:' + b"1" * 64 + b'", "size": "1"}}',
        b'{"config": {"digest": "sha256:' + b"1" * 64 + b'", "size": 1}, "layers": {}}',
        b'{"config": {"digest": "sha256:' + b"1" * 64 + b'", "size": 1}, "layers": [1]}',
        b'{"config": {"digest": "../../../x", "size": 1}}',
    ],
)
def test_manifest_garbage_rejected(raw: bytes) -> None:
    with pytest.raises(StoreError, match="invalid manifest"):
        Manifest.from_bytes(raw)


def test_manifest_helpers() -> None:
    m = sample_manifest()
    assert m.total_size == 150 + 68 + 7 + 7
    assert m.referenced_digests() == {D1, D2, D3}
    assert [d.digest for d in m.layers_of(MEDIA_TYPE_SYSTEM)] == [D3]
    assert m.descriptors[0] == m.config


# -- config blob ---------------------------------------------------------------------------

CONFIG_VECTOR = (
    b'{"model_format":"gguf","model_family":"test","model_families":["test"],"model_type":"0",'
    b'"file_type":"unknown","architecture":"amd64","os":"linux"}\n'
)


def test_minimal_gguf_and_config_vectors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = minimal_gguf_bytes()
    assert len(data) == 68
    assert hashlib.sha256(data).hexdigest() == MINIMAL_GGUF_SHA256
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    config = ModelConfig.from_gguf(read_gguf_info(path))
    raw = config.to_bytes()
    assert raw == CONFIG_VECTOR
    assert hashlib.sha256(raw).hexdigest() == (
        "99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"
    )
    assert ModelConfig.from_bytes(raw) == config


def test_config_optional_fields_in_order() -> None:
    config = ModelConfig(
        model_format="gguf",
        model_family="llama",
        model_families=["llama", "clip"],
        model_type="8.0B",
        file_type="Q4_K_M",
        renderer="qwen3",
        parser="qwen3",
        requires="0.12.0",
        remote_host="https://ollama.com:443",
        remote_model="m",
        capabilities=["completion", "tools"],
        context_length=4096,
        embedding_length=896,
        base_name="base",
        draft={"model_format": "gguf", "architecture": "llama"},
    )
    keys = list(json.loads(config.to_bytes()))
    assert keys == [
        "model_format", "model_family", "model_families", "model_type", "file_type",
        "renderer", "parser", "requires", "remote_host", "remote_model", "capabilities",
        "context_length", "embedding_length", "base_name", "draft", "architecture", "os",
    ]  # fmt: skip
    assert ModelConfig.from_bytes(config.to_bytes()) == config


def test_config_reading_is_tolerant() -> None:
    raw = (
        b'{"model_format":"gguf","model_family":"llama","model_families":null,'
        b'"model_type":"8.0B","file_type":"Q4_0","architecture":"amd64","os":"linux",'
        b'"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"unknown_key":[1,{"x":2}]}'
    )
    config = ModelConfig.from_bytes(raw)
    assert config.model_families is None and config.file_type == "Q4_0"
    out = config.to_bytes()
    assert b"rootfs" not in out and b"unknown_key" not in out
    assert b'"model_families":null' in out  # Go's nil slice
    assert ModelConfig().to_bytes() == (
        b'{"model_format":"","model_family":"","model_families":null,"model_type":"",'
        b'"file_type":"","architecture":"amd64","os":"linux"}\n'
    )
    for bad in (b"[]", b"nope", b'{"model_family": 3}', b'{"context_length": "x"}'):
        with pytest.raises(StoreError, match="invalid config blob"):
            ModelConfig.from_bytes(bad)


def test_params_media_type_constant() -> None:
    assert MEDIA_TYPE_PARAMS == "application/vnd.ollama.image.params"
