"""``pull``: a model from a registry into the store (reference §4.2).

Manifest first, then every blob (layers, config last) the store does not have. Each blob is
downloaded into ``blobs/sha256-<hex>-partial`` (the name Ollama uses; the store's prune removes
old ones) and hashed as it arrives; an interrupted download keeps that file, and the next pull
continues it with ``Range``. Only a file whose whole content has the expected digest is renamed
to its blob name; a mismatch deletes it. The manifest bytes are written last, verbatim, so the
model digest equals the registry's. The whole pull holds :meth:`Store.writing` so a concurrent
prune cannot collect the new blobs before the manifest references them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from modelkit.errors import ModelNotFoundError, RegistryError, StoreError
from modelkit.names import ModelName
from modelkit.registry.client import RegistryClient, repository
from modelkit.store import (
    Descriptor,
    Manifest,
    Store,
    StoredManifest,
    blob_filename,
    normalize_digest,
)
from modelkit.store.blobs import fsync_dir

__all__ = ["PARTIAL_SUFFIX", "ProgressFn", "partial_path", "pull"]

ProgressFn = Callable[[dict[str, Any]], None]
"""Receives Ollama ``/api/pull``-style objects: ``{"status": …[, "digest", "total",
"completed"]}``."""

PARTIAL_SUFFIX = "-partial"
_EMIT_INTERVAL = 0.1
_BATCH = 4 << 20


def _ignore(_event: dict[str, Any]) -> None:
    pass


def partial_path(store: Store, digest: str) -> Path:
    """``blobs/sha256-<hex>-partial``: where a download of ``digest`` is kept until complete."""
    return store.blobs.directory / (blob_filename(digest) + PARTIAL_SUFFIX)


def _unique(descriptors: list[Descriptor]) -> list[Descriptor]:
    seen: set[str] = set()
    out = []
    for d in descriptors:
        if d.digest not in seen:
            seen.add(d.digest)
            out.append(d)
    return out


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _hash_prefix(fd: int, length: int) -> hashlib._Hash:
    h = hashlib.sha256()
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    pos = 0
    while pos < length:
        n = os.preadv(fd, [view[: min(len(buf), length - pos)]], pos)
        if n == 0:
            break
        h.update(view[:n])
        pos += n
    return h


class _Emitter:
    def __init__(self, progress: ProgressFn, digest: str, total: int) -> None:
        self.progress = progress
        self.event = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        self.last = 0.0

    def __call__(self, completed: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= _EMIT_INTERVAL:
            self.last = now
            self.progress({**self.event, "completed": completed})


def _download(
    store: Store, client: RegistryClient, repo: str, desc: Descriptor, progress: ProgressFn
) -> None:
    digest, total = normalize_digest(desc.digest), desc.size
    emit = _Emitter(progress, digest, total)
    if store.has_blob(digest) and store.blob_size(digest) == total:
        emit(total, force=True)
        return
    partial = partial_path(store, digest)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another pull of the same blob: wait for it
        if store.has_blob(digest) and store.blob_size(digest) == total:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)  # it finished meanwhile; this file is no longer needed
            emit(total, force=True)
            return
        done = os.fstat(fd).st_size
        if done > total:
            os.ftruncate(fd, 0)
            done = 0
        h = _hash_prefix(fd, done)
        emit(done, force=True)
        if done < total or total == 0:
            done, h = _fetch(client, repo, digest, total, fd, done, h, emit)
        got = "sha256:" + h.hexdigest()
        if got != digest:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise RegistryError(
                f"digest mismatch, file must be downloaded again: want {digest}, got {got}",
                url=client.url(f"/v2/{repo}/blobs/{digest}"),
            )
        os.fsync(fd)
        os.replace(partial, store.blob_path(digest))
        fsync_dir(store.blobs.directory)
        emit(total, force=True)
    finally:
        os.close(fd)


class _Writer:
    """Appends to a file from a helper thread, so disk writes overlap network reads.

    Bytes are batched to ``_BATCH`` before being handed over. :meth:`close` writes whatever
    was accepted (also after an error upstream) and re-raises a write error.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="modelkit-pull-write", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    _write_all(self.fd, data)
                except BaseException as exc:
                    self.error = exc

    def write(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.error is not None:
            raise self.error
        if self.buf:
            self.queue.put(bytes(self.buf))
            self.buf.clear()

    def close(self) -> None:
        try:
            if self.error is None and self.buf:
                self.queue.put(bytes(self.buf))
                self.buf.clear()
        finally:
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            raise self.error


def _fetch(
    client: RegistryClient,
    repo: str,
    digest: str,
    total: int,
    fd: int,
    done: int,
    h: hashlib._Hash,
    emit: _Emitter,
) -> tuple[int, hashlib._Hash]:
    url = client.url(f"/v2/{repo}/blobs/{digest}")
    try:
        with client.open_blob(repo, digest, done) as response:
            if done and response.status_code == 200:  # Range ignored: start over
                os.ftruncate(fd, 0)
                done, h = 0, hashlib.sha256()
            os.lseek(fd, done, os.SEEK_SET)
            writer = _Writer(fd)
            try:
                for chunk in response.iter_raw():
                    if done + len(chunk) > total:
                        raise RegistryError(
                            f"download blob {digest}: {url} sent more than the {total} bytes"
                            " the manifest lists",
                            url=url,
                        )
                    writer.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    emit(done)
            finally:
                writer.close()
    except httpx.HTTPError as exc:
        raise RegistryError(
            f"download blob {digest}: {url} interrupted after {done} of {total} bytes ({exc});"
            " pull again to resume",
            url=url,
        ) from exc
    if done != total:
        raise RegistryError(
            f"download blob {digest}: {url} ended after {done} of {total} bytes;"
            " pull again to resume",
            url=url,
        )
    return done, h


def pull(
    store: Store,
    name: ModelName | str,
    *,
    insecure: bool = False,
    progress: ProgressFn | None = None,
    prune: bool = True,
    client: RegistryClient | None = None,
) -> StoredManifest:
    """Pull ``name`` from its registry into ``store``; returns the written manifest.

    ``prune``: delete blobs of a replaced manifest that nothing references any more (Ollama's
    behaviour unless ``OLLAMA_NOPRUNE``). ``client`` overrides the one made from the name.
    Raises :class:`RegistryError` (network, HTTP, digest) or :class:`StoreError`.
    """
    model = ModelName.parse(name) if isinstance(name, str) else name
    emit = progress or _ignore
    repo = repository(model)
    own = client is None
    reg = client if client is not None else RegistryClient.for_name(model, insecure=insecure)
    try:
        emit({"status": "pulling manifest"})
        raw, _content_type = reg.get_manifest(repo, model.tag)
        try:
            manifest = Manifest.from_bytes(raw)
        except StoreError as exc:
            raise RegistryError(f"pull model manifest: {exc}") from exc
        store.ensure_layout()
        with store.writing():
            for desc in _unique([*manifest.layers, manifest.config]):
                _download(store, reg, repo, desc, emit)
            emit({"status": "verifying sha256 digest"})
            emit({"status": "writing manifest"})
            with store.lock():
                try:
                    old: StoredManifest | None = store.read_manifest(model)
                except (ModelNotFoundError, StoreError):
                    old = None
                stored = store.write_manifest_bytes(model, raw)
        if prune and old is not None:
            stale = old.manifest.referenced_digests() - manifest.referenced_digests()
            if stale:
                emit({"status": "removing unused layers"})
                store.remove_unreferenced(stale)
        emit({"status": "success"})
        return stored
    finally:
        if own:
            reg.close()
