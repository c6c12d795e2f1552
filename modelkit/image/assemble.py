"""Assembly: a stored model's two layers on top of a base image, as an OCI manifest + config.
Owns the :class:`AssembledImage` every output reads (blobs, digests, how to stream each).

Nothing runs and nothing is downloaded here: the base's manifest and config are read, the
model's layers are hashed (or found in the layer cache), and the new config and manifest are
computed. Outputs then stream the blobs they need.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from modelkit.errors import ImageError
from modelkit.image.base import BaseImage, read_base, scratch_base
from modelkit.image.layers import BytesFn, Layer, LayerCache, LayerSpec, compute_layer
from modelkit.image.model_layers import DEFAULT_MODELS_PATH, ModelLayers, model_layer_specs
from modelkit.image.oci import (
    OCI_CONFIG,
    OCI_MANIFEST,
    BlobDescriptor,
    ConfigChanges,
    HistoryLayer,
    Platform,
    canonical_json,
    created_timestamp,
    extend_config,
    host_platform,
    image_manifest,
    oci_layer_media_type,
)
from modelkit.image.refs import ImageRef
from modelkit.names import ModelName
from modelkit.registry.client import RegistryClient
from modelkit.store import Store, sha256_digest, view_model

__all__ = ["AssembledImage", "ImageBlob", "ProgressFn", "assemble"]

ProgressFn = Callable[[dict[str, Any]], None]
"""Receives the registry's event objects: ``{"status"}``, plus ``digest``/``total``/
``completed`` while bytes move (hashing a layer, uploading a blob)."""

_EMIT_INTERVAL = 0.1


def _ignore(_event: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class ImageBlob:
    """One blob of the image (a layer or the config) and how to stream its bytes."""

    descriptor: BlobDescriptor
    stream: Callable[[BytesFn | None], Iterator[bytes]]
    label: str
    """What a progress bar says (``weights``, ``base layer``, ``config``, ...)."""
    mount_from: ImageRef | None = None
    """The base image's registry location, for a cross-repository mount."""

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size


@dataclass
class AssembledImage:
    """An image ready to be written or pushed. Close it (or use ``with``) when done."""

    model: ModelName
    model_layers: tuple[Layer, ...]
    """The model's layers (weights first when present, then the metadata layer)."""
    layers: tuple[ImageBlob, ...]
    """All layers in manifest order: the base's, then the model's."""
    config: dict[str, Any]
    config_bytes: bytes
    manifest_bytes: bytes
    base: BaseImage
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def config_blob(self) -> ImageBlob:
        raw = self.config_bytes
        return ImageBlob(
            BlobDescriptor(OCI_CONFIG, sha256_digest(raw), len(raw)),
            lambda _on_bytes: iter([raw]),
            "config",
        )

    @property
    def manifest_descriptor(self) -> BlobDescriptor:
        raw = self.manifest_bytes
        return BlobDescriptor(OCI_MANIFEST, sha256_digest(raw), len(raw))

    @property
    def digest(self) -> str:
        """The image's identity: ``sha256:<hex>`` of its manifest."""
        return self.manifest_descriptor.digest

    def blobs(self) -> list[ImageBlob]:
        """Every blob the manifest references: layers, then the config."""
        return [*self.layers, self.config_blob]

    def close(self) -> None:
        self.base.close()

    def __enter__(self) -> AssembledImage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def throttled(emit: ProgressFn, event: dict[str, Any], total: int) -> BytesFn:
    """A byte counter that reports ``event`` with its ``completed`` bytes, at most every
    ``_EMIT_INTERVAL`` seconds and once more on reaching ``total`` (progress bars need no
    event per 1 MiB chunk)."""
    done = 0
    last = 0.0

    def on_bytes(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= _EMIT_INTERVAL or done >= total:
            last = now
            emit({**event, "completed": min(done, total)})

    return on_bytes


def _hash_progress(emit: ProgressFn, label: str, key: str, total: int) -> BytesFn:
    return throttled(emit, {"status": f"hashing {label}", "digest": key, "total": total}, total)


def _model_layers(
    layers: ModelLayers, cache: LayerCache | None, emit: ProgressFn
) -> list[tuple[Layer, str]]:
    out: list[tuple[Layer, str]] = []
    specs: list[tuple[LayerSpec | None, str]] = [
        (layers.weights, "weights"),
        (layers.metadata, "model config"),
    ]
    for spec, label in specs:
        if spec is None:
            continue
        on_bytes = _hash_progress(emit, label, f"hash:{label}", spec.content_size)
        out.append((compute_layer(spec, cache, on_bytes), label))
    return out


def _labels(layers: ModelLayers, created: str, user: Mapping[str, str]) -> dict[str, str]:
    name = layers.name
    labels = {
        "org.opencontainers.image.title": name.display,
        "org.opencontainers.image.version": name.tag,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": str(name),
        "io.modelkit.model.name": name.display,
        "io.modelkit.model.digest": layers.manifest_digest,
        "io.modelkit.model.parameters": json.dumps(
            layers.parameters, sort_keys=True, separators=(",", ":")
        ),
    }
    labels.update(user)
    return labels


def assemble(
    store: Store,
    name: ModelName | str,
    *,
    base: str | None = None,
    model_only: bool = False,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    models_path: str = DEFAULT_MODELS_PATH,
    source_date_epoch: int | None = None,
    platform: Platform | None = None,
    insecure: bool = False,
    client: RegistryClient | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
) -> AssembledImage:
    """Put the stored model ``name`` on top of ``base`` (or on nothing with ``model_only``).

    ``base`` is ``oci:DIR[:TAG]``, ``docker-archive:FILE``, ``docker-daemon:NAME:TAG`` or a
    registry reference (``client`` then serves it). ``env`` and ``labels`` override what the
    base and modelkit set; ``source_date_epoch`` fixes ``created`` (default: the Unix epoch).
    Raises :class:`~modelkit.errors.ImageError`, ``ModelNotFoundError``, ``RegistryError``.
    """
    if model_only and base is not None:
        raise ImageError("--model-only and a runtime image exclude each other")
    if not model_only and base is None:
        raise ImageError("no runtime image: give one (--runtime IMAGE) or use --model-only")
    emit = progress or _ignore
    model = ModelName.parse(name) if isinstance(name, str) else name
    view = view_model(store, model)
    specs = model_layer_specs(store, view, models_path=models_path)
    want = platform or host_platform()
    if base is None:
        base_image = scratch_base(want)
    else:
        emit({"status": f"reading runtime image {base}"})
        base_image = read_base(base, platform=want, insecure=insecure, client=client)
    try:
        cache = LayerCache.for_store(store.root) if use_cache else None
        computed = _model_layers(specs, cache, emit)
        created = created_timestamp(source_date_epoch)
        changes = ConfigChanges(
            created=created,
            # The image's store is read-only (dirs 0o555): Ollama must not try to prune it.
            env={"OLLAMA_MODELS": models_path, "OLLAMA_NOPRUNE": "1", **(env or {})},
            labels=_labels(specs, created, labels or {}),
            entrypoint=entrypoint,
            cmd=cmd,
            layers=[HistoryLayer(layer.digest, layer.spec.created_by) for layer, _ in computed],
        )
        config = extend_config(base_image.config, changes)
        config_bytes = canonical_json(config)
        blobs = [_base_blob(base_image, d) for d in base_image.layers]
        blobs += [_model_blob(layer, label) for layer, label in computed]
        config_desc = BlobDescriptor(OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes))
        manifest = image_manifest(config_desc, [b.descriptor for b in blobs], None)
    except BaseException:
        base_image.close()
        raise
    return AssembledImage(
        model=specs.name,
        model_layers=tuple(layer for layer, _ in computed),
        layers=tuple(blobs),
        config=config,
        config_bytes=config_bytes,
        manifest_bytes=manifest,
        base=base_image,
    )


def _base_blob(base: BaseImage, desc: BlobDescriptor) -> ImageBlob:
    out = BlobDescriptor(oci_layer_media_type(desc.media_type), desc.digest, desc.size)

    def stream(on_bytes: BytesFn | None) -> Iterator[bytes]:
        for chunk in base.chunks(desc):
            yield chunk
            if on_bytes is not None:
                on_bytes(len(chunk))

    return ImageBlob(out, stream, "base layer", base.registry)


def _model_blob(layer: Layer, label: str) -> ImageBlob:
    desc = BlobDescriptor(layer.media_type, layer.digest, layer.size)
    return ImageBlob(desc, layer.stream, label)
