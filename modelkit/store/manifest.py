"""Manifests: the Docker v2 JSON naming a model's config and layers (reference §3.2, §3.3).

Writing reproduces Ollama's Go encoder byte for byte (compact, fields in Ollama's order, a
trailing newline). Reading accepts any field order, extra fields and pretty printing, because
pulled manifests are stored verbatim: a model's identity is the sha256 of the manifest *file
bytes*, so those bytes are kept next to the parsed form wherever a manifest is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelkit.errors import StoreError
from modelkit.store.digest import is_valid_digest, sha256_hex
from modelkit.store.gojson import go_json_dumps

__all__ = [
    "ALL_LAYER_MEDIA_TYPES",
    "MEDIA_TYPE_ADAPTER",
    "MEDIA_TYPE_CONFIG",
    "MEDIA_TYPE_DRAFT",
    "MEDIA_TYPE_EMBED",
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_LICENSE",
    "MEDIA_TYPE_MANIFEST",
    "MEDIA_TYPE_MESSAGES",
    "MEDIA_TYPE_MODEL",
    "MEDIA_TYPE_PARAMS",
    "MEDIA_TYPE_PROJECTOR",
    "MEDIA_TYPE_PROMPT",
    "MEDIA_TYPE_SYSTEM",
    "MEDIA_TYPE_TEMPLATE",
    "MEDIA_TYPE_TENSOR",
    "WEIGHT_MEDIA_TYPES",
    "Descriptor",
    "Manifest",
    "manifest_digest",
]

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"

MEDIA_TYPE_MODEL = "application/vnd.ollama.image.model"
MEDIA_TYPE_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TYPE_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_TYPE_DRAFT = "application/vnd.ollama.image.draft"
MEDIA_TYPE_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_TYPE_PROMPT = "application/vnd.ollama.image.prompt"  # legacy name for template
MEDIA_TYPE_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_TYPE_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TYPE_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_TYPE_LICENSE = "application/vnd.ollama.image.license"
MEDIA_TYPE_EMBED = "application/vnd.ollama.image.embed"  # deprecated, ignored by readers
MEDIA_TYPE_TENSOR = "application/vnd.ollama.image.tensor"
MEDIA_TYPE_JSON = "application/vnd.ollama.image.json"

ALL_LAYER_MEDIA_TYPES = frozenset(
    {
        MEDIA_TYPE_MODEL,
        MEDIA_TYPE_PROJECTOR,
        MEDIA_TYPE_ADAPTER,
        MEDIA_TYPE_DRAFT,
        MEDIA_TYPE_TEMPLATE,
        MEDIA_TYPE_PROMPT,
        MEDIA_TYPE_SYSTEM,
        MEDIA_TYPE_PARAMS,
        MEDIA_TYPE_MESSAGES,
        MEDIA_TYPE_LICENSE,
        MEDIA_TYPE_EMBED,
        MEDIA_TYPE_TENSOR,
        MEDIA_TYPE_JSON,
    }
)
"""Layer media types Ollama knows; readers must ignore any others."""

WEIGHT_MEDIA_TYPES = frozenset(
    {
        MEDIA_TYPE_MODEL,
        MEDIA_TYPE_PROJECTOR,
        MEDIA_TYPE_ADAPTER,
        MEDIA_TYPE_DRAFT,
        MEDIA_TYPE_TENSOR,
    }
)
"""Layers of weights (big, and changing rarely): what a server loads and an image keeps in a
layer of its own."""


def manifest_digest(raw: bytes) -> str:
    """A model's digest: lowercase hex sha256 of its manifest file bytes (no prefix)."""
    return sha256_hex(raw)


@dataclass(frozen=True)
class Descriptor:
    """A manifest entry (config or layer). ``from_``/``name`` are omitted when empty."""

    media_type: str
    digest: str
    size: int
    from_: str | None = None
    name: str | None = None

    def to_json_obj(self) -> dict[str, Any]:
        """Fields in Ollama's order: mediaType, digest, size, from?, name?."""
        obj: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.from_:
            obj["from"] = self.from_
        if self.name:
            obj["name"] = self.name
        return obj

    @classmethod
    def from_json_obj(cls, obj: Any, *, where: str = "layer") -> Descriptor:
        """Parse one descriptor; extra keys are ignored. Raises :class:`StoreError`."""
        if not isinstance(obj, dict):
            raise StoreError(f"invalid manifest: {where} is not an object")
        media_type = obj.get("mediaType", "")
        digest = obj.get("digest")
        size = obj.get("size", 0)
        from_ = obj.get("from")
        name = obj.get("name")
        if not isinstance(media_type, str):
            raise StoreError(f"invalid manifest: {where} mediaType is not a string")
        if not isinstance(digest, str) or not is_valid_digest(digest):
            raise StoreError(f"invalid manifest: {where} has an invalid digest {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise StoreError(f"invalid manifest: {where} size is not a non-negative integer")
        if from_ is not None and not isinstance(from_, str):
            raise StoreError(f"invalid manifest: {where} 'from' is not a string")
        if name is not None and not isinstance(name, str):
            raise StoreError(f"invalid manifest: {where} 'name' is not a string")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            from_=from_ or None,
            name=name or None,
        )


@dataclass(frozen=True)
class Manifest:
    """A Docker v2 manifest as Ollama writes it."""

    config: Descriptor
    layers: list[Descriptor] = field(default_factory=list)
    schema_version: int = 2
    media_type: str = MEDIA_TYPE_MANIFEST

    @property
    def descriptors(self) -> list[Descriptor]:
        """Config first, then the layers."""
        return [self.config, *self.layers]

    @property
    def total_size(self) -> int:
        """Sum of the config and layer sizes (Ollama's model size)."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def referenced_digests(self) -> set[str]:
        """Every blob digest the manifest needs (lowercase ``sha256:<hex>``)."""
        return {"sha256:" + d.digest[7:].lower() for d in self.descriptors}

    def layers_of(self, media_type: str) -> list[Descriptor]:
        return [layer for layer in self.layers if layer.media_type == media_type]

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json_obj(),
            "layers": [layer.to_json_obj() for layer in self.layers],
        }

    def to_bytes(self) -> bytes:
        """Ollama's manifest file bytes: Go JSON, compact, trailing newline."""
        return go_json_dumps(self.to_json_obj(), newline=True)

    def digest(self) -> str:
        """Hex sha256 of :meth:`to_bytes` (the model digest of a manifest written by us)."""
        return manifest_digest(self.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse manifest bytes (any field order, extra fields, pretty printed).

        Raises :class:`StoreError` for anything that is not a usable manifest.
        """
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"invalid manifest: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise StoreError("invalid manifest: not a JSON object")
        schema_version = obj.get("schemaVersion", 2)
        media_type = obj.get("mediaType", MEDIA_TYPE_MANIFEST)
        if isinstance(schema_version, bool) or not isinstance(schema_version, int):
            raise StoreError("invalid manifest: schemaVersion is not an integer")
        if not isinstance(media_type, str):
            raise StoreError("invalid manifest: mediaType is not a string")
        if "config" not in obj:
            raise StoreError("invalid manifest: no config")
        config = Descriptor.from_json_obj(obj["config"], where="config")
        layers_obj = obj.get("layers")
        if layers_obj is None:
            layers_obj = []
        if not isinstance(layers_obj, list):
            raise StoreError("invalid manifest: layers is not a list")
        layers = [
            Descriptor.from_json_obj(item, where=f"layer {i}") for i, item in enumerate(layers_obj)
        ]
        return cls(
            config=config, layers=layers, schema_version=schema_version, media_type=media_type
        )
