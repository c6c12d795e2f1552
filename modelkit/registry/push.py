"""``push``: a stored model to a registry (reference §4.3).

For each blob (layers, then config): ``HEAD`` — already there, skip; else a cross-repository
mount when the same registry is known to hold it in another repository (the layer's ``from``
model, or another local model of the same host that references the blob); else an upload:
``POST`` then one ``PATCH`` per ``chunk_size`` bytes, then ``PUT ?digest=``. Finally the stored
manifest bytes are ``PUT`` unchanged, so the registry's manifest digest equals the local one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from modelkit.errors import ModelNameError, ModelNotFoundError
from modelkit.names import ModelName
from modelkit.registry.client import RegistryClient, repository
from modelkit.registry.pull import ProgressFn
from modelkit.store import MEDIA_TYPE_MANIFEST, Descriptor, Store, StoredManifest

__all__ = ["DEFAULT_CHUNK_SIZE", "push"]

DEFAULT_CHUNK_SIZE = 256 << 20
_EMIT_INTERVAL = 0.1


def _ignore(_event: dict[str, Any]) -> None:
    pass


def _mount_sources(store: Store, model: ModelName, stored: StoredManifest) -> dict[str, str]:
    """digest → another repository of the same registry that should hold it."""
    target = repository(model)
    sources: dict[str, str] = {}
    for layer in stored.manifest.layers:
        if not layer.from_:
            continue
        try:
            origin = ModelName.parse(layer.from_)
        except ModelNameError:
            continue
        if origin.host.casefold() == model.host.casefold() and repository(origin) != target:
            sources.setdefault(layer.digest, repository(origin))
    wanted = stored.manifest.referenced_digests()
    for other in store.list_models():
        if other.name.host.casefold() != model.host.casefold():
            continue
        repo = repository(other.name)
        if repo == target:
            continue
        for digest in other.manifest.referenced_digests() & wanted:
            sources.setdefault(digest, repo)
    return sources


def _push_blob(
    store: Store,
    client: RegistryClient,
    repo: str,
    desc: Descriptor,
    mount_from: str | None,
    chunk_size: int,
    emit: ProgressFn,
) -> str:
    """Make the registry hold ``desc`` in ``repo``; returns "exists", "mounted" or "uploaded"."""
    digest, total = desc.digest, desc.size
    event: dict[str, Any] = {"status": f"pushing {digest[7:19]}", "digest": digest, "total": total}
    if client.blob_size(repo, digest) is not None:
        emit({**event, "completed": total})
        return "exists"
    location = client.start_upload(repo, mount=digest, mount_from=mount_from)
    if location is None:
        emit({**event, "completed": total})
        return "mounted"
    done = 0
    last = 0.0
    emit({**event, "completed": 0})

    def on_bytes(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= _EMIT_INTERVAL:
            last = now
            emit({**event, "completed": done})

    with store.open_blob(digest) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            n = min(chunk_size, size - offset)
            location = client.upload_part(location, fd, offset, n, on_bytes)
            offset += n
    client.finish_upload(location, digest)
    emit({**event, "completed": total})
    return "uploaded"


def push(
    store: Store,
    name: ModelName | str,
    *,
    insecure: bool = False,
    progress: ProgressFn | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    client: RegistryClient | None = None,
) -> dict[str, str]:
    """Push the stored model ``name`` to its registry.

    Returns digest → what happened to that blob (``"exists"``, ``"mounted"``, ``"uploaded"``).
    Raises :class:`ModelNotFoundError` when ``name`` is not in the store, and
    :class:`~modelkit.errors.RegistryError` for registry failures.
    """
    model = ModelName.parse(name) if isinstance(name, str) else name
    emit = progress or _ignore
    repo = repository(model)
    emit({"status": "retrieving manifest"})
    try:
        stored = store.read_manifest(model)
    except ModelNotFoundError:
        emit({"status": "couldn't retrieve manifest"})
        raise
    sources = _mount_sources(store, model, stored)
    own = client is None
    reg = client if client is not None else RegistryClient.for_name(model, insecure=insecure)
    outcome: dict[str, str] = {}
    try:
        for desc in [*stored.manifest.layers, stored.manifest.config]:
            if desc.digest in outcome:
                continue
            outcome[desc.digest] = _push_blob(
                store, reg, repo, desc, sources.get(desc.digest), chunk_size, emit
            )
        emit({"status": "pushing manifest"})
        media_type = stored.manifest.media_type or MEDIA_TYPE_MANIFEST
        reg.put_manifest(repo, model.tag, stored.raw, media_type)
        emit({"status": "success"})
        return outcome
    finally:
        if own:
            reg.close()
