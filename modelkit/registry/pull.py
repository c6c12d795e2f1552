"""``pull``: a model from a registry into the store (reference §4.2).

Manifest first, then every blob (layers, config last) the store does not have, up to
:data:`BLOB_WORKERS` blobs at a time. Each blob is downloaded into
``blobs/sha256-<hex>-partial`` (the name Ollama uses; the store's prune removes old ones). A
small blob is one stream, hashed as it arrives; an interrupted download keeps that file, and the
next pull continues it with ``Range``. A blob larger than the range threshold
(:data:`RANGE_THRESHOLD`, Ollama's 100 MB minimum part size) is fetched as up to
:data:`MAX_PARTS` parallel ``Range: bytes=start-end`` parts into the partial file pre-sized to
the blob's size; each part's progress is kept in ``<partial>-<N>`` (Ollama's JSON
``{"N","Offset","Size","Completed"}``), so a later pull resumes every unfinished part; a registry
that answers a range with 200 gets a single stream instead. A part or stream that is cut off,
refused or answered with a 5xx is tried again (:class:`Retry`, Ollama's 6 tries with doubling
pauses) from where it stopped, within the same pull. Only a file whose whole content has
the expected digest is renamed to its blob name (then the part files go); a mismatch deletes
it. The manifest bytes are written last, verbatim, so the model digest equals the registry's.
The whole pull holds :meth:`Store.writing` so a concurrent prune cannot collect the new blobs
before the manifest references them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

__all__ = [
    "BLOB_WORKERS",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "PARTIAL_SUFFIX",
    "RANGE_THRESHOLD",
    "ProgressFn",
    "partial_path",
    "pull",
]

ProgressFn = Callable[[dict[str, Any]], None]
"""Receives Ollama ``/api/pull``-style objects: ``{"status": …[, "digest", "total",
"completed"]}``."""

PARTIAL_SUFFIX = "-partial"
_EMIT_INTERVAL = 0.1
_BATCH = 4 << 20

RANGE_THRESHOLD = 100_000_000
"""Blobs larger than this (bytes) are fetched in parallel ranges; also the smallest part size
(Ollama's 100 MB)."""
MAX_PART_SIZE = 1_000_000_000
"""The largest part (Ollama's 1000 MB): part size = size/16 clamped to [threshold, this]."""
MAX_PARTS = 16
"""Parts of one blob fetched at the same time (and the divisor of the part size)."""
BLOB_WORKERS = 4
"""Blobs fetched at the same time."""
_STATE_EVERY = 1 << 20
ATTEMPTS = 6
"""Tries per part (or per single-stream blob) before a pull gives up, as Ollama's 6; each
retry resumes where the previous try stopped."""
RETRY_DELAY = 1.0
"""Seconds before the first retry; doubled for each next one (Ollama: 2^try seconds)."""
_MAX_DELAY = 30.0

_T = TypeVar("_T")


class _Interrupted(RegistryError):
    """A transfer that stopped early for a reason worth retrying: a dropped or refused
    connection, a timeout, a short body, a 5xx or 429 answer."""


@dataclass(frozen=True)
class Retry:
    attempts: int = ATTEMPTS
    delay: float = RETRY_DELAY

    def pause(self, attempt: int, stop: threading.Event | None) -> bool:
        """Wait before try ``attempt + 1``; False when ``stop`` was set meanwhile."""
        seconds = min(self.delay * 2 ** (attempt - 1), _MAX_DELAY)
        if stop is None:
            time.sleep(seconds)
            return True
        return not stop.wait(seconds)


def _retrying(action: Callable[[], _T], retry: Retry, stop: threading.Event | None = None) -> _T:
    attempt = 1
    while True:
        try:
            return action()
        except _Interrupted as err:
            if attempt >= retry.attempts or not retry.pause(attempt, stop):
                tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
                raise RegistryError(f"{err} (gave up after {tries})", url=err.url) from err
            attempt += 1


def _transient_status(status: int) -> bool:
    return status >= 500 or status == 429


def _interrupted_request(err: RegistryError) -> RegistryError:
    """``err`` as an :class:`_Interrupted` when it is worth retrying, else itself."""
    no_answer = err.status == 0 and isinstance(err.__cause__, httpx.TransportError)
    if no_answer or _transient_status(err.status):
        return _Interrupted(str(err), url=err.url, status=err.status)
    return err


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
        self.lock = threading.Lock()

    def __call__(self, completed: int, *, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if force or now - self.last >= _EMIT_INTERVAL:
                self.last = now
                self.progress({**self.event, "completed": completed})


def _serialized(progress: ProgressFn) -> ProgressFn:
    """``progress`` called under a lock: blobs report from several threads."""
    lock = threading.Lock()

    def call(event: dict[str, Any]) -> None:
        with lock:
            progress(event)

    return call


def _download(
    store: Store,
    client: RegistryClient,
    repo: str,
    desc: Descriptor,
    progress: ProgressFn,
    range_threshold: int = RANGE_THRESHOLD,
    retry: Retry = Retry(),
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
            _remove_part_files(partial)
            emit(total, force=True)
            return
        if total > range_threshold or _part_files(partial):
            h = _fetch_ranged(
                client, repo, digest, total, fd, partial, range_threshold, emit, retry
            )
        else:
            h = _retrying(lambda: _fetch_rest(client, repo, digest, total, fd, emit), retry)
        got = "sha256:" + h.hexdigest()
        if got != digest:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            _remove_part_files(partial)
            raise RegistryError(
                f"digest mismatch, file must be downloaded again: want {digest}, got {got}",
                url=client.url(f"/v2/{repo}/blobs/{digest}"),
            )
        os.fsync(fd)
        os.replace(partial, store.blob_path(digest))
        fsync_dir(store.blobs.directory)
        _remove_part_files(partial)
        emit(total, force=True)
    finally:
        os.close(fd)


def _fetch_rest(
    client: RegistryClient, repo: str, digest: str, total: int, fd: int, emit: _Emitter
) -> hashlib._Hash:
    """One stream from where the partial file ends (a retry or a new pull resumes)."""
    done = os.fstat(fd).st_size
    if done > total:
        os.ftruncate(fd, 0)
        done = 0
    h = _hash_prefix(fd, done)
    emit(done, force=True)
    if done < total or total == 0:
        done, h = _fetch(client, repo, digest, total, fd, done, h, emit)
    return h


# -- parallel ranges ---------------------------------------------------------------------


class _RangeIgnored(Exception):
    """The registry answered a ranged GET with the whole blob (200)."""


@dataclass
class _Part:
    """One range of a blob: ``[offset, offset + size)``, of which ``completed`` bytes are on
    disk; saved as Ollama's ``<blob>-partial-<N>`` JSON."""

    n: int
    offset: int
    size: int
    completed: int
    path: Path

    def save(self) -> None:
        data = {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


def _part_files(partial: Path) -> list[Path]:
    """The ``<partial>-<N>`` state files beside ``partial``."""
    prefix = partial.name + "-"
    try:
        entries = os.listdir(partial.parent)
    except FileNotFoundError:
        return []
    return [
        partial.parent / e for e in entries if e.startswith(prefix) and e[len(prefix) :].isdigit()
    ]


def _remove_part_files(partial: Path) -> None:
    prefix = partial.name + "-"
    with contextlib.suppress(FileNotFoundError):
        for e in os.listdir(partial.parent):
            rest = e[len(prefix) :]
            if e.startswith(prefix) and rest.removesuffix(".tmp").isdigit():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial.parent / e)


def _load_parts(partial: Path, total: int) -> list[_Part] | None:
    """The saved parts when they exactly tile ``[0, total)``, else None."""
    parts = []
    try:
        for path in _part_files(partial):
            obj = json.loads(path.read_text())
            parts.append(
                _Part(
                    int(obj["N"]), int(obj["Offset"]), int(obj["Size"]), int(obj["Completed"]), path
                )
            )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    parts.sort(key=lambda p: p.offset)
    pos = 0
    for part in parts:
        if (
            part.offset != pos
            or part.size <= 0
            or not 0 <= part.completed <= part.size
            or part.path.name != f"{partial.name}-{part.n}"
        ):
            return None
        pos += part.size
    return parts if parts and pos == total else None


def _plan_parts(partial: Path, total: int, min_part: int, done: int) -> list[_Part]:
    """Ollama's split: size/16 clamped to ``[min_part, MAX_PART_SIZE]``; the first ``done``
    bytes (a single-stream partial file) count as completed."""
    size = max(1, min(max(total // MAX_PARTS, min_part), MAX_PART_SIZE))
    parts = []
    for n, offset in enumerate(range(0, total, size)):
        length = min(size, total - offset)
        completed = min(max(done - offset, 0), length)
        parts.append(_Part(n, offset, length, completed, partial.with_name(f"{partial.name}-{n}")))
    return parts


def _fetch_ranged(
    client: RegistryClient,
    repo: str,
    digest: str,
    total: int,
    fd: int,
    partial: Path,
    min_part: int,
    emit: _Emitter,
    retry: Retry,
) -> hashlib._Hash:
    """Fill ``partial`` by parallel ranges (resuming saved parts, each part retried on its
    own); returns its hash."""
    parts = _load_parts(partial, total)
    if parts is None:
        if _part_files(partial):  # unreadable state: the sparse file cannot be trusted
            _remove_part_files(partial)
            os.ftruncate(fd, 0)
        parts = _plan_parts(partial, total, min_part, min(os.fstat(fd).st_size, total))
        for part in parts:
            part.save()  # before the file grows to ``total``: its holes are never "completed"
    os.ftruncate(fd, total)
    lock = threading.Lock()

    def report() -> None:
        with lock:
            emit(sum(p.completed for p in parts))

    emit(sum(p.completed for p in parts), force=True)
    pending = [p for p in parts if p.completed < p.size]
    stop = threading.Event()
    if pending:
        with ThreadPoolExecutor(
            max_workers=min(MAX_PARTS, len(pending)), thread_name_prefix="modelkit-pull-part"
        ) as pool:
            futures = [
                pool.submit(
                    _retrying,
                    lambda p=p: _fetch_part(client, repo, digest, fd, p, stop, report),
                    retry,
                    stop,
                )
                for p in pending
            ]
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if any(isinstance(e, _RangeIgnored) for e in errors):
            _remove_part_files(partial)
            os.ftruncate(fd, 0)
            emit(0, force=True)
            return _retrying(lambda: _fetch_rest(client, repo, digest, total, fd, emit), retry)
        if errors:
            raise errors[0]
    return _hash_prefix(fd, total)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _fetch_part(
    client: RegistryClient,
    repo: str,
    digest: str,
    fd: int,
    part: _Part,
    stop: threading.Event,
    report: Callable[[], None],
) -> None:
    url = client.url(f"/v2/{repo}/blobs/{digest}")
    start, end = part.offset + part.completed, part.offset + part.size  # end exclusive
    where = f"download blob {digest}: {url} part {part.n}"
    unsaved = 0
    try:
        try:
            response = client.request(
                "GET",
                url,
                what=f"download blob {digest}",
                headers={"Range": f"bytes={start}-{end - 1}"},
                stream=True,
                follow_redirects=True,
            )
        except RegistryError as err:
            raise _interrupted_request(err) from err.__cause__
        try:
            if response.status_code == 200:
                stop.set()
                raise _RangeIgnored
            if response.status_code != 206:
                status = response.status_code
                error = _Interrupted if _transient_status(status) else RegistryError
                raise error(f"{where}: HTTP {status}", url=url, status=status)
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise RegistryError(
                    f"{where}: asked for bytes {start}-{end - 1}, got {content_range!r}", url=url
                )
            pos = start
            for chunk in response.iter_raw():
                if stop.is_set():
                    return
                if pos + len(chunk) > end:
                    raise RegistryError(f"{where}: sent more than the {end - start} bytes asked")
                _pwrite_all(fd, chunk, pos)
                pos += len(chunk)
                part.completed += len(chunk)
                unsaved += len(chunk)
                if unsaved >= _STATE_EVERY:
                    part.save()
                    unsaved = 0
                report()
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise _Interrupted(
            f"{where} interrupted after {part.completed} of {part.size} bytes ({exc});"
            " pull again to resume",
            url=url,
        ) from exc
    finally:
        part.save()
    if part.completed != part.size:
        raise _Interrupted(
            f"{where} ended after {part.completed} of {part.size} bytes; pull again to resume",
            url=url,
        )


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


@contextlib.contextmanager
def _opened(
    client: RegistryClient, repo: str, digest: str, offset: int
) -> Iterator[httpx.Response]:
    """``client.open_blob``, with failures worth retrying (no answer, 5xx) as _Interrupted."""
    with contextlib.ExitStack() as stack:
        try:
            response = stack.enter_context(client.open_blob(repo, digest, offset))
        except RegistryError as err:
            raise _interrupted_request(err) from err.__cause__
        yield response


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
        with _opened(client, repo, digest, done) as response:
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
        raise _Interrupted(
            f"download blob {digest}: {url} interrupted after {done} of {total} bytes ({exc});"
            " pull again to resume",
            url=url,
        ) from exc
    if done != total:
        raise _Interrupted(
            f"download blob {digest}: {url} ended after {done} of {total} bytes;"
            " pull again to resume",
            url=url,
        )
    return done, h


def _download_all(
    store: Store,
    client: RegistryClient,
    repo: str,
    descriptors: list[Descriptor],
    progress: ProgressFn,
    range_threshold: int,
    max_blobs: int,
    retry: Retry,
) -> None:
    """Every blob, ``max_blobs`` at a time; all run to the end, then the first error is raised
    (what finished stays finished)."""
    progress = _serialized(progress)
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_blobs, len(descriptors))), thread_name_prefix="modelkit-pull"
    ) as pool:
        for desc in descriptors:
            futures.append(
                pool.submit(_download, store, client, repo, desc, progress, range_threshold, retry)
            )
    for future in futures:
        exc = future.exception()
        if exc is not None:
            raise exc


def pull(
    store: Store,
    name: ModelName | str,
    *,
    insecure: bool = False,
    progress: ProgressFn | None = None,
    prune: bool = True,
    client: RegistryClient | None = None,
    range_threshold: int = RANGE_THRESHOLD,
    max_blobs: int = BLOB_WORKERS,
    retry: Retry | None = None,
) -> StoredManifest:
    """Pull ``name`` from its registry into ``store``; returns the written manifest.

    ``prune``: delete blobs of a replaced manifest that nothing references any more (Ollama's
    behaviour unless ``OLLAMA_NOPRUNE``). ``client`` overrides the one made from the name.
    ``range_threshold``: blobs larger than this are fetched in parallel ranges of at least this
    size. ``max_blobs``: blobs fetched at the same time. ``retry``: how often and how soon an
    interrupted part or blob is tried again (default :data:`ATTEMPTS` tries, from
    :data:`RETRY_DELAY` seconds, doubling); each try resumes where the last one stopped.
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
            _download_all(
                store,
                reg,
                repo,
                _unique([*manifest.layers, manifest.config]),
                emit,
                range_threshold,
                max_blobs,
                retry or Retry(),
            )
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
