"""The Ollama-format store: ``$OLLAMA_MODELS/{blobs,manifests}`` (reference §3).

Layout (exactly Ollama's)::

    <root>/blobs/sha256-<hex>                                 content-addressed, 0644
    <root>/manifests/<host>/<namespace>/<model>/<tag>         manifest JSON, dirs 0755
    <root>/.modelkit.lock, <root>/.modelkit.gc.lock           our lock files

Concurrency model:

- Blob writes take no lock (content-addressed names, atomic renames; see :mod:`.blobs`).
- :meth:`Store.lock` is an inter-process ``filelock.FileLock``; manifest writes, copies,
  deletes and prune hold it. A manifest write checks, under the lock, that every blob it names
  exists with the right size, and prune/delete only remove blobs under the same lock after
  recomputing references, so a manifest never points at a missing or partial blob.
- Between writing its blobs and writing its manifest a build's blobs are unreferenced. A
  build protects them by holding :meth:`Store.writing` (a shared ``flock``) for that span:
  :meth:`Store.prune` waits for the exclusive side, and :meth:`Store.delete` leaves blob
  removal to a later prune while any writer is active.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import filelock

from modelkit.errors import ModelNameError, ModelNotFoundError, StoreError
from modelkit.names import ModelName
from modelkit.store.blobs import (
    TEMP_PREFIX,
    BlobRef,
    BlobStore,
    ProgressCallback,
    create_locked_temp,
    fsync_dir,
    make_dirs,
    temp_file_in_use,
)
from modelkit.store.config import ModelConfig
from modelkit.store.digest import normalize_digest
from modelkit.store.manifest import Manifest, manifest_digest

__all__ = ["GC_LOCK_FILENAME", "LOCK_FILENAME", "Store", "StoredManifest"]

LOCK_FILENAME = ".modelkit.lock"
GC_LOCK_FILENAME = ".modelkit.gc.lock"


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as found on disk: parsed form plus its exact bytes."""

    name: ModelName
    manifest: Manifest
    raw: bytes
    digest: str
    """Lowercase hex sha256 of ``raw`` (the model digest; no ``sha256:`` prefix)."""
    modified: datetime
    """The manifest file's mtime (UTC)."""
    path: Path

    @property
    def size(self) -> int:
        """Total bytes of config and layers (Ollama's model size)."""
        return self.manifest.total_size

    @property
    def short_digest(self) -> str:
        """First 12 hex characters (``ollama list`` ID)."""
        return self.digest[:12]


def _default_models_dir(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".ollama" / "models"


class Store:
    """An Ollama-format model store rooted at ``root`` (``$OLLAMA_MODELS``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = BlobStore(self.root / "blobs")
        self.manifests_dir = self.root / "manifests"
        self._filelock = filelock.FileLock(str(self.root / LOCK_FILENAME))
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Store:
        """``$OLLAMA_MODELS`` (trimmed of spaces and quotes, ``~`` expanded), else
        ``~/.ollama/models``."""
        env = os.environ if environ is None else environ
        raw = env.get("OLLAMA_MODELS", "").strip().strip("\"'")
        if not raw:
            return cls(_default_models_dir(env))
        if raw == "~" or raw.startswith("~/"):
            home = env.get("HOME") or str(Path.home())
            raw = home + raw[1:]
        elif raw.startswith("~"):
            raw = os.path.expanduser(raw)
        return cls(Path(raw).absolute())

    def ensure_layout(self) -> None:
        """Create ``blobs/`` and ``manifests/`` (mode 0755)."""
        make_dirs(self.blobs.directory)
        make_dirs(self.manifests_dir)

    # -- locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float = -1) -> Iterator[None]:
        """Hold the store's inter-process lock (reentrant within a thread).

        ``timeout`` in seconds (-1: wait forever); :class:`StoreError` when it runs out.
        """
        make_dirs(self.root)
        try:
            self._filelock.acquire(timeout=timeout)
        except filelock.Timeout as exc:
            raise StoreError(f"the store {self.root} is locked by another process") from exc
        try:
            yield
        finally:
            self._filelock.release()

    def _gc_lock_fd(self) -> int:
        make_dirs(self.root)
        return os.open(self.root / GC_LOCK_FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _writing_depth(self) -> int:
        return int(getattr(self._local, "writing", 0))

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark a build in progress: blobs written inside are safe from prune/delete.

        Hold it from the first blob write until the manifest is written. Shared between any
        number of writers (threads or processes); prune waits for all of them to leave.
        """
        fd = self._gc_lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._local.writing = self._writing_depth() + 1
            try:
                yield
            finally:
                self._local.writing = self._writing_depth() - 1
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _gc_exclusive(self, timeout: float | None) -> Iterator[None]:
        if self._writing_depth() > 0:
            raise StoreError("cannot prune inside Store.writing() (it would wait for itself)")
        fd = self._gc_lock_fd()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise StoreError(
                            "the store is busy: a build is writing into it; try again later"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def _try_gc_exclusive(self) -> int | None:
        """The gc lock's fd held exclusively, or None while any writer is active."""
        if self._writing_depth() > 0:
            return None
        fd = self._gc_lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    # -- blobs -----------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs.blob_path(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has_blob(digest)

    def blob_size(self, digest: str) -> int:
        return self.blobs.blob_size(digest)

    def open_blob(self, digest: str) -> io.BufferedReader:
        return self.blobs.open_blob(digest)

    def read_blob(self, digest: str) -> bytes:
        with self.blobs.open_blob(digest) as f:
            return f.read()

    def verify_blob(self, digest: str) -> BlobRef:
        return self.blobs.verify_blob(digest)

    def write_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobRef:
        return self.blobs.write_bytes(data, expected_digest)

    def write_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        progress: ProgressCallback | None = None,
        total: int = 0,
    ) -> BlobRef:
        return self.blobs.write_stream(chunks, expected_digest, progress, total)

    def import_file(
        self,
        src: str | os.PathLike[str],
        expected_digest: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> BlobRef:
        return self.blobs.import_file(src, expected_digest, progress)

    def link_or_copy_known(
        self,
        src: str | os.PathLike[str],
        digest: str,
        progress: ProgressCallback | None = None,
    ) -> BlobRef:
        return self.blobs.link_or_copy_known(src, digest, progress)

    # -- manifests: discovery ------------------------------------------------------------

    def _manifest_files(self) -> Iterator[tuple[tuple[str, str, str, str], Path]]:
        """Every file exactly at ``manifests/*/*/*/*``."""

        def dirs(path: Path) -> list[os.DirEntry[str]]:
            try:
                return [e for e in os.scandir(path) if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                return []

        for host in dirs(self.manifests_dir):
            for ns in dirs(Path(host.path)):
                for model in dirs(Path(ns.path)):
                    try:
                        tags = list(os.scandir(model.path))
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    for tag in tags:
                        if tag.is_file():
                            yield (host.name, ns.name, model.name, tag.name), Path(tag.path)

    def _names(self) -> Iterator[tuple[ModelName, Path]]:
        for parts, path in self._manifest_files():
            try:
                yield ModelName.from_manifest_relpath(parts), path
            except ModelNameError:
                continue

    def _read_at(self, name: ModelName, path: Path) -> StoredManifest:
        try:
            with open(path, "rb") as f:
                raw = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            raise ModelNotFoundError(f"model '{name.display}' not found") from None
        except IsADirectoryError:
            raise ModelNotFoundError(f"model '{name.display}' not found") from None
        try:
            manifest = Manifest.from_bytes(raw)
        except StoreError as exc:
            raise StoreError(f"{name.display}: {exc}") from None
        return StoredManifest(
            name=name,
            manifest=manifest,
            raw=raw,
            digest=manifest_digest(raw),
            modified=datetime.fromtimestamp(mtime, tz=UTC),
            path=path,
        )

    def manifest_path(self, name: ModelName) -> Path:
        """``manifests/<host>/<namespace>/<model>/<tag>`` for ``name`` (exact spelling)."""
        return self.manifests_dir / name.manifest_relpath

    def resolve_name(self, name: ModelName) -> ModelName:
        """``name`` spelled as the store already spells it (Ollama's ``getExistingName``).

        An existing manifest equal to ``name`` ignoring case wins as a whole (an exact-case
        one first). Otherwise each part (host, namespace, model, tag) takes the spelling of
        the same part, ignoring case, in any existing manifest path; parts found nowhere
        keep the requested spelling.
        """
        existing = [n for n, _ in self._names()]
        if name in existing:
            return name
        for n in sorted(existing, key=str):
            if n.matches(name):
                return ModelName(n.host, n.namespace, n.model, n.tag, name.scheme)
        parts = list(name.parts)
        for i, want in enumerate(name.parts):
            spellings = sorted({n.parts[i] for n in existing if n.parts[i].lower() == want.lower()})
            if spellings and want not in spellings:
                parts[i] = spellings[0]
        return ModelName(parts[0], parts[1], parts[2], parts[3], name.scheme)

    def has_model(self, name: ModelName) -> bool:
        try:
            self.read_manifest(name)
        except ModelNotFoundError:
            return False
        return True

    def read_manifest(self, name: ModelName) -> StoredManifest:
        """The manifest of ``name`` (resolved case-insensitively if not found as spelled).

        :class:`ModelNotFoundError` when absent; :class:`StoreError` when unparsable.
        """
        path = self.manifest_path(name)
        if path.is_file():
            return self._read_at(name, path)
        resolved = self.resolve_name(name)
        if resolved != name:
            path = self.manifest_path(resolved)
            if path.is_file():
                return self._read_at(resolved, path)
        raise ModelNotFoundError(f"model '{name.display}' not found")

    def read_config(self, manifest: Manifest | StoredManifest) -> ModelConfig:
        """Parse the config blob a manifest points at."""
        m = manifest.manifest if isinstance(manifest, StoredManifest) else manifest
        return ModelConfig.from_bytes(self.read_blob(m.config.digest))

    def list_models(self) -> list[StoredManifest]:
        """Every readable manifest at ``manifests/*/*/*/*``, sorted by name.

        Paths that are not valid names and manifests that do not parse are skipped.
        """
        out: list[StoredManifest] = []
        for name, path in self._names():
            try:
                out.append(self._read_at(name, path))
            except StoreError:
                continue
        out.sort(key=lambda s: str(s.name))
        return out

    def referenced_digests(self) -> set[str]:
        """Digests (``sha256:<hex>``) referenced by any manifest.

        Raises :class:`StoreError` if a manifest with a valid name cannot be read or parsed:
        without it, what is garbage cannot be known.
        """
        refs: set[str] = set()
        for name, path in self._names():
            try:
                stored = self._read_at(name, path)
            except ModelNotFoundError:
                continue  # removed meanwhile
            refs |= stored.manifest.referenced_digests()
        return refs

    # -- manifests: changes --------------------------------------------------------------

    def _check_blobs(self, manifest: Manifest) -> None:
        for d in manifest.descriptors:
            try:
                size = self.blobs.blob_size(d.digest)
            except StoreError:
                raise StoreError(
                    f"cannot write manifest: blob {d.digest} ({d.media_type}) is not in the store"
                ) from None
            if size != d.size:
                raise StoreError(
                    f"cannot write manifest: blob {d.digest} is {size} bytes,"
                    f" the manifest says {d.size}"
                )

    def _write_manifest_locked(
        self, name: ModelName, raw: bytes, manifest: Manifest, prune_replaced: bool
    ) -> StoredManifest:
        self._check_blobs(manifest)
        path = self.manifest_path(name)
        old: Manifest | None = None
        if prune_replaced and path.is_file():
            with contextlib.suppress(StoreError, OSError):
                old = Manifest.from_bytes(path.read_bytes())
        make_dirs(path.parent)
        fd, tmp = create_locked_temp(path.parent)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(tmp, path)
            mtime = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        fsync_dir(path.parent)
        stored = StoredManifest(
            name=name,
            manifest=manifest,
            raw=raw,
            digest=manifest_digest(raw),
            modified=datetime.fromtimestamp(mtime, tz=UTC),
            path=path,
        )
        if old is not None:
            self.remove_unreferenced(old.referenced_digests() - manifest.referenced_digests())
        return stored

    def staged(self, name: ModelName, manifest: Manifest) -> StoredManifest:
        """``manifest`` as it would be stored under ``name``, without writing it (its blobs
        must exist): what a build checks before it writes the tag."""
        self._check_blobs(manifest)
        raw = manifest.to_bytes()
        return StoredManifest(
            name=name,
            manifest=manifest,
            raw=raw,
            digest=manifest_digest(raw),
            modified=datetime.now(tz=UTC),
            path=self.manifest_path(name),
        )

    def write_manifest(
        self, name: ModelName, manifest: Manifest, *, prune_replaced: bool = False
    ) -> StoredManifest:
        """Write ``manifest`` (Ollama's bytes) for ``name``, atomically.

        The name is first resolved case-insensitively against existing manifests. Every
        referenced blob must exist with the manifest's size (:class:`StoreError` otherwise).
        ``prune_replaced``: delete blobs of the manifest being replaced that nothing
        references any more (Ollama's behaviour unless ``OLLAMA_NOPRUNE``).
        """
        return self.write_manifest_bytes(name, manifest.to_bytes(), prune_replaced=prune_replaced)

    def write_manifest_bytes(
        self, name: ModelName, raw: bytes, *, prune_replaced: bool = False
    ) -> StoredManifest:
        """Like :meth:`write_manifest` for exact bytes (a pulled manifest, stored verbatim)."""
        manifest = Manifest.from_bytes(raw)
        with self.lock():
            target = self.resolve_name(name)
            return self._write_manifest_locked(target, raw, manifest, prune_replaced)

    def copy(self, src: ModelName, dst: ModelName) -> StoredManifest:
        """Copy a model: the manifest file's bytes to the new name (blobs are shared)."""
        with self.lock():
            stored = self.read_manifest(src)
            target = self.resolve_name(dst)
            if target == stored.name:
                return stored
            return self._write_manifest_locked(target, stored.raw, stored.manifest, False)

    def _remove_empty_dirs_up(self, start: Path) -> None:
        d = start
        while d != self.manifests_dir and self.manifests_dir in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def remove_unreferenced(self, digests: Iterable[str]) -> list[str]:
        """Delete those of ``digests`` that no manifest references; returns the removed ones.

        Takes the store lock. Skipped (nothing removed; a later :meth:`prune` collects them)
        while any writer holds :meth:`writing` — a build might be about to reference them —
        and when some manifest cannot be parsed.
        """
        candidates = {normalize_digest(d) for d in digests}
        if not candidates:
            return []
        with self.lock():
            fd = self._try_gc_exclusive()
            if fd is None:
                return []
            try:
                try:
                    refs = self.referenced_digests()
                except StoreError:
                    return []
                removed = [d for d in sorted(candidates - refs) if self.blobs.remove(d)]
                if removed:
                    fsync_dir(self.blobs.directory)
                return removed
            finally:
                os.close(fd)

    def delete(self, name: ModelName) -> list[str]:
        """Delete a model: its manifest, now-empty manifest dirs, and its blobs that no
        other manifest references (always, whatever ``OLLAMA_NOPRUNE`` says).

        Returns the removed blob digests. :class:`ModelNotFoundError` if absent.
        """
        with self.lock():
            stored: StoredManifest | None
            try:
                stored = self.read_manifest(name)
            except ModelNotFoundError:
                raise
            except StoreError:
                stored = None  # unparsable: still remove the file, keep the blobs
            path = (
                stored.path if stored is not None else self.manifest_path(self.resolve_name(name))
            )
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise ModelNotFoundError(f"model '{name.display}' not found") from None
            fsync_dir(path.parent)
            self._remove_empty_dirs_up(path.parent)
            if stored is None:
                return []
            return self.remove_unreferenced(stored.manifest.referenced_digests())

    def prune(self, min_age_seconds: float = 0.0, *, timeout: float | None = None) -> list[str]:
        """Delete blobs no manifest references, stale temp files and empty manifest dirs.

        Blobs and foreign non-blob files modified less than ``min_age_seconds`` ago are kept
        (Ollama's server uses one hour). Waits for active writers (:meth:`writing`);
        ``timeout`` bounds the wait (:class:`StoreError`). Refuses with :class:`StoreError`
        if any manifest fails to parse. Returns the removed blob digests.
        """
        with self._gc_exclusive(timeout), self.lock():
            refs = self.referenced_digests()
            now = time.time()
            removed: list[str] = []
            for digest, path in self.blobs.iter_blobs():
                if digest in refs:
                    continue
                if min_age_seconds > 0:
                    try:
                        if now - path.stat().st_mtime < min_age_seconds:
                            continue
                    except FileNotFoundError:
                        continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(digest)
            for path in self.blobs.stale_temp_files(min_age_seconds=min_age_seconds):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if removed:
                fsync_dir(self.blobs.directory)
            self._prune_manifest_tree(min_age_seconds)
            return sorted(removed)

    def _prune_manifest_tree(self, min_age_seconds: float) -> None:
        """Remove stale manifest temp files and empty directories under ``manifests/``."""
        if not self.manifests_dir.is_dir():
            return
        now = time.time()
        for dirpath, _dirnames, filenames in os.walk(self.manifests_dir, topdown=False):
            here = Path(dirpath)
            for fname in filenames:
                if not fname.startswith(TEMP_PREFIX):
                    continue
                p = here / fname
                try:
                    age = now - p.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age >= max(min_age_seconds, 5.0) and not temp_file_in_use(p):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            if here != self.manifests_dir:
                with contextlib.suppress(OSError):
                    here.rmdir()  # only succeeds when empty
