"""A stored model as two image layers: its weights, then its small blobs and manifest file.
Owns where the model lands in the image (an Ollama store at ``/models``) and what goes where.

Layer 1 holds the big blobs (model, projectors, adapters, drafts) at
``<models>/blobs/sha256-<hex>``; layer 2 the config and small blobs (template, system, params,
messages, license) plus the manifest at ``<models>/manifests/<host>/<ns>/<model>/<tag>``. A
PARAMETER change therefore changes only layer 2 (a few KB): the weights layer is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from modelkit.errors import ImageError
from modelkit.image.layers import LayerFile, LayerSpec
from modelkit.names import ModelName
from modelkit.store import (
    WEIGHT_MEDIA_TYPES,
    ModelView,
    Store,
    blob_filename,
)

__all__ = ["DEFAULT_MODELS_PATH", "ModelLayers", "model_layer_specs"]

DEFAULT_MODELS_PATH = "/models"


@dataclass(frozen=True)
class ModelLayers:
    """The model's two layers (the weights one absent for a model without weight blobs)."""

    name: ModelName
    manifest_digest: str
    """``sha256:<hex>`` of the model's manifest file (the model's identity)."""
    parameters: dict[str, Any]
    weights: LayerSpec | None
    metadata: LayerSpec


def _check_models_path(models_path: str) -> PurePosixPath:
    p = PurePosixPath(models_path)
    if not p.is_absolute() or p == PurePosixPath("/") or ".." in p.parts:
        raise ImageError(f"the model store path in the image must be absolute: {models_path!r}")
    return p


def _blob_file(store: Store, root: PurePosixPath, digest: str) -> LayerFile:
    path = store.blob_path(digest)
    # The blob's file name is its digest (the store only renames verified bytes into place),
    # so it can key the layer cache without reading the file.
    return LayerFile.from_file(str(root / "blobs" / blob_filename(digest)), path, digest)


def model_layer_specs(
    store: Store, view: ModelView, *, models_path: str = DEFAULT_MODELS_PATH
) -> ModelLayers:
    """The weights and metadata layers of a model read back from ``store``."""
    root = _check_models_path(models_path)
    stored = view.stored
    name = stored.name
    weights: dict[str, LayerFile] = {}
    small: dict[str, LayerFile] = {}
    for desc in stored.manifest.layers:
        target = weights if desc.media_type in WEIGHT_MEDIA_TYPES else small
        if desc.digest not in weights and desc.digest not in small:
            target[desc.digest] = _blob_file(store, root, desc.digest)
    config = stored.manifest.config.digest
    if config not in weights:
        small.setdefault(config, _blob_file(store, root, config))
    manifest_path = root / "manifests" / str(name.manifest_relpath)
    manifest_file = LayerFile.from_bytes(str(manifest_path), stored.raw)
    display = name.display
    return ModelLayers(
        name=name,
        manifest_digest="sha256:" + stored.digest,
        parameters=dict(view.parameters),
        weights=(
            LayerSpec(tuple(weights.values()), f"modelkit: weights of {display}")
            if weights
            else None
        ),
        metadata=LayerSpec(
            (*small.values(), manifest_file), f"modelkit: config and manifest of {display}"
        ),
    )
