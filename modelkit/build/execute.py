"""Carrying out a plan: quantize the model layer if asked, stream new blobs into the store (hash
and copy in one pass), write the config, then the manifest last and atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from modelkit.build.cache import BuildCache, FileStamp
from modelkit.build.layers import PlannedLayer
from modelkit.build.plan import BuildPlan
from modelkit.build.quantize import run_quantize
from modelkit.errors import BuildError, DigestMismatchError, ModelNotFoundError
from modelkit.names import ModelName
from modelkit.store import (
    MEDIA_TYPE_CONFIG,
    Descriptor,
    Manifest,
    ModelConfig,
    Store,
    StoredManifest,
)

# (label, bytes done, bytes total): the CLI draws it as a progress bar labelled ``label``
# (``copying NAME``, ``quantizing F16 model to Q4_K_M``); total 0 is a plain status line.
ProgressFn = Callable[[str, int, int], None]
# Called with the finished but untagged model; raising stops the build before the tag is
# written (the CLI passes the smoke check and ``--test`` here).
CheckFn = Callable[[StoredManifest], None]


@dataclass
class BuildResult:
    name: ModelName
    stored: StoredManifest
    layers: list[PlannedLayer]
    removed_blobs: list[str]


def _store_layer(
    layer: PlannedLayer, store: Store, cache: BuildCache, progress: ProgressFn | None
) -> PlannedLayer:
    if layer.data is None and layer.path is None:
        return layer  # inherited, or already made in the store (a quantized model)
    if layer.data is not None:
        ref = store.write_bytes(layer.data)
        if ref.digest != layer.digest:
            raise DigestMismatchError(str(layer.digest), ref.digest)
        return layer
    assert layer.path is not None
    if layer.status == "cached":
        return layer
    stamp = FileStamp.of(layer.path)
    label = layer.path.name

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(f"copying {label}", done, total)

    ref = store.import_file(layer.path, expected_digest=layer.digest, progress=report)
    if FileStamp.of(layer.path) != stamp:
        raise BuildError(f"{layer.path} changed while it was being copied; build again")
    cache.remember_file(layer.path, stamp, ref.digest)
    if layer.gguf is not None:
        cache.remember_gguf(ref.digest, layer.gguf)
    return layer.with_digest(ref.digest, ref.size)


def _quantized(
    plan: BuildPlan, store: Store, cache: BuildCache, progress: ProgressFn | None
) -> tuple[list[PlannedLayer], ModelConfig]:
    """The plan's layers and config with its model layer quantized (if it asks for that)."""
    step = plan.quantize
    if step is None:
        return plan.layers, plan.config
    layer, info = run_quantize(step, store, cache, progress)
    layers = [layer if i == step.index else x for i, x in enumerate(plan.layers)]
    return layers, replace(plan.config, file_type=ModelConfig.from_gguf(info).file_type)


def execute_build(
    plan: BuildPlan,
    name: ModelName,
    store: Store,
    cache: BuildCache,
    *,
    noprune: bool = False,
    progress: ProgressFn | None = None,
    check: CheckFn | None = None,
) -> BuildResult:
    # ``writing`` keeps a concurrent prune from collecting blobs that this build has
    # written but not yet referenced from its manifest.
    with store.writing():
        layers, config = _quantized(plan, store, cache, progress)
        layers = [_store_layer(layer, store, cache, progress) for layer in layers]
        config_ref = store.write_bytes(config.to_bytes())
        manifest = Manifest(
            config=Descriptor(MEDIA_TYPE_CONFIG, config_ref.digest, config_ref.size),
            layers=[
                Descriptor(x.media_type, str(x.digest), x.size, from_=x.from_ or None)
                for x in layers
            ],
        )
        if check is not None:
            # Outside the store lock: a check loads the model and may take seconds.
            check(store.staged(store.resolve_name(name), manifest))
        with store.lock():
            target = store.resolve_name(name)
            try:
                old: StoredManifest | None = store.read_manifest(target)
            except ModelNotFoundError:
                old = None
            stored = store.write_manifest(target, manifest)
            cache.save()
    removed = [] if (old is None or noprune) else _drop_unreferenced(store, old)
    return BuildResult(name=target, stored=stored, layers=layers, removed_blobs=removed)


def _drop_unreferenced(store: Store, old: StoredManifest) -> list[str]:
    """Blobs of the replaced manifest that no manifest uses any more (Ollama does the same)."""
    old_digests = {old.manifest.config.digest, *(x.digest for x in old.manifest.layers)}
    with store.lock():
        return store.remove_unreferenced(old_digests)
