"""Content-addressed blob files in ``<store>/blobs/`` (reference §3.1, §3.7).

Every write goes through a temp file inside ``blobs/`` whose name is never a valid digest
(``.modelkit-tmp-<pid>-<random>``): bytes are streamed and hashed, fsynced, the digest is
checked, and only then is the file renamed to ``sha256-<hex>`` (mode 0644) and the directory
fsynced. A crash or an exception at any point leaves no file under a final name; the temp file
is removed on exceptions, and one left by a killed process is found by :meth:`BlobStore.
stale_temp_files` (the writer holds an ``flock`` on its temp file, so a live one is never
reported) and removed by the store's prune.

Blob writes need no store lock: names are content addresses and the rename is atomic, so two
writers of the same bytes simply produce the same file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelkit.errors import BlobNotFoundError, DigestMismatchError, StoreError
from modelkit.store.digest import blob_filename, digest_from_filename, normalize_digest

__all__ = ["TEMP_PREFIX", "BlobRef", "BlobStore", "ProgressCallback"]

TEMP_PREFIX = ".modelkit-tmp-"
"""Prefix of in-progress files (in ``blobs/`` and manifest directories)."""

ProgressCallback = Callable[[int, int], None]
"""``progress(bytes_done, total)``; called after each chunk."""

CHUNK_SIZE = 8 * 1024 * 1024
_FICLONE = 0x40049409  # Linux ioctl: share the source file's extents (reflink)
_NO_FAST_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY, errno.EBADF}
)


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: ``sha256:<hex>`` digest and size in bytes."""

    digest: str
    size: int


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename/unlink inside it is durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with mode 0755 (as Ollama)."""
    os.makedirs(path, mode=0o755, exist_ok=True)


def create_locked_temp(directory: Path, *, label: str = "") -> tuple[int, Path]:
    """Create ``directory/.modelkit-tmp-<pid>-<label><random>`` (O_EXCL, 0644), flocked.

    The exclusive ``flock`` marks the file as in use for as long as the descriptor is open,
    which is how :func:`temp_file_in_use` tells a live writer from a dead one.
    """
    make_dirs(directory)
    while True:
        path = directory / f"{TEMP_PREFIX}{os.getpid()}-{label}{secrets.token_hex(8)}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, 0o644)
        except BaseException:
            os.close(fd)
            _unlink_quiet(path)
            raise
        return fd, path


def remove_stale_temps(directory: Path) -> int:
    """Delete the temp files (:func:`create_locked_temp`) in ``directory`` that a killed
    writer left: no live process holds their lock. Returns how many went."""
    removed = 0
    now = time.time()
    for path in directory.glob(TEMP_PREFIX + "*"):
        try:
            young = now - path.stat().st_mtime < 5.0  # created but perhaps not yet locked
        except FileNotFoundError:
            continue
        if not young and not temp_file_in_use(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def temp_file_in_use(path: Path) -> bool:
    """True when a live process holds the ``flock`` of a temp file (or it vanished)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # renamed or removed meanwhile: nothing to clean
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _unlink_quiet(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _try_reflink(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError:
        return False
    return True


def _copy_range(src_fd: int, dst_fd: int, total: int, progress: ProgressCallback | None) -> bool:
    """Kernel-side copy with ``copy_file_range``; False (nothing written) if unsupported."""
    done = 0
    while done < total:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(total - done, 1 << 30), done, done)
        except OSError as exc:
            if done == 0 and exc.errno in _NO_FAST_COPY:
                return False
            raise
        if n == 0:
            break
        done += n
        if progress is not None:
            progress(done, total)
    return True


def _pipelined_copy(
    src_fd: int,
    dst_fd: int,
    h: hashlib._Hash,
    total: int,
    progress: ProgressCallback | None,
) -> int:
    """Read, hash and write ``src_fd`` to ``dst_fd`` in one pass over two buffers.

    While chunk *i* is written by a helper thread, chunk *i+1* is read and hashed here
    (hashing and file I/O both release the GIL), so the copy costs about max(hash, I/O)
    instead of their sum. Every byte hashed is a byte written.
    """
    buffers = [bytearray(CHUNK_SIZE), bytearray(CHUNK_SIZE)]
    size = 0
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelkit-blob-write") as pool:
        try:
            i = 0
            while True:
                buf = buffers[i % 2]
                n = os.readv(src_fd, [buf])
                if not n:
                    break
                chunk = memoryview(buf)[:n]
                h.update(chunk)
                if pending is not None:
                    pending.result()  # the other buffer is free again
                pending = pool.submit(_write_all, dst_fd, chunk)
                size += n
                if progress is not None:
                    progress(size, total)
                i += 1
            if pending is not None:
                pending.result()
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    pending.result()
    return size


class BlobStore:
    """The ``blobs/`` directory of a store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- lookup ------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """``blobs/sha256-<hex>`` (whether or not it exists). Validates the digest."""
        return self.directory / blob_filename(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        """Size of a stored blob; :class:`BlobNotFoundError` when missing."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(normalize_digest(digest)) from None

    def open_blob(self, digest: str) -> io.BufferedReader:
        """Open a stored blob for reading; :class:`BlobNotFoundError` when missing."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(normalize_digest(digest)) from None

    def verify_blob(self, digest: str) -> BlobRef:
        """Re-hash a stored blob; :class:`DigestMismatchError` if its bytes do not match."""
        want = normalize_digest(digest)
        h = hashlib.sha256()
        size = 0
        with self.open_blob(want) as f:
            buf = bytearray(CHUNK_SIZE)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
        got = "sha256:" + h.hexdigest()
        if got != want:
            raise DigestMismatchError(want, got)
        return BlobRef(want, size)

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """``(digest, path)`` of every file named like a blob."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            digest = digest_from_filename(entry.name)
            if digest is not None and entry.is_file(follow_symlinks=False):
                yield digest, Path(entry.path)

    def stale_temp_files(self, *, min_age_seconds: float = 0.0) -> list[Path]:
        """Files in ``blobs/`` that are not blobs and not being written.

        Our temp files count when no live writer holds them (and they are at least a few
        seconds old, to cover the instant between creating and locking one); other non-blob
        names (e.g. Ollama's ``-partial`` download files) count when older than
        ``min_age_seconds``.
        """
        out: list[Path] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        now = time.time()
        for entry in entries:
            if digest_from_filename(entry.name) is not None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            age = now - st.st_mtime
            path = Path(entry.path)
            if entry.name.startswith(TEMP_PREFIX):
                if age >= max(min_age_seconds, 5.0) and not temp_file_in_use(path):
                    out.append(path)
            elif entry.is_file(follow_symlinks=False) and age >= min_age_seconds:
                out.append(path)
        return out

    # -- writing -----------------------------------------------------------------------

    def _touch(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            os.utime(path)

    def _existing(self, digest: str, size: int | None = None) -> BlobRef | None:
        """The stored blob (touched) if present with the right size, else None."""
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if size is not None and st.st_size != size:
            return None
        self._touch(path)
        return BlobRef(normalize_digest(digest), st.st_size)

    def _commit(self, fd: int, tmp: Path, digest: str, size: int) -> BlobRef:
        """fsync ``tmp`` and rename it to the blob's name (unless an equal blob is there)."""
        os.fsync(fd)
        final = self.blob_path(digest)
        existing = self._existing(digest, size)
        if existing is not None:
            _unlink_quiet(tmp)
            return existing
        os.replace(tmp, final)
        fsync_dir(self.directory)
        return BlobRef(digest, size)

    def _write_temp(
        self,
        fill: Callable[[int], tuple[str, int]],
        expected_digest: str | None,
    ) -> BlobRef:
        """Run ``fill(fd) -> (digest, size)`` on a fresh temp file, then verify and commit."""
        want = normalize_digest(expected_digest) if expected_digest is not None else None
        fd, tmp = create_locked_temp(self.directory)
        try:
            digest, size = fill(fd)
            if want is not None and digest != want:
                raise DigestMismatchError(want, digest)
            return self._commit(fd, tmp, digest, size)
        finally:
            os.close(fd)  # releases the flock
            _unlink_quiet(tmp)  # a no-op after a successful rename

    def write_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobRef:
        """Store ``data``; returns its :class:`BlobRef` (an existing blob is reused)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected_digest is not None and normalize_digest(expected_digest) != digest:
            raise DigestMismatchError(normalize_digest(expected_digest), digest)
        existing = self._existing(digest, len(data))
        if existing is not None:
            return existing

        def fill(fd: int) -> tuple[str, int]:
            _write_all(fd, data)
            return digest, len(data)

        return self._write_temp(fill, None)

    def write_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        progress: ProgressCallback | None = None,
        total: int = 0,
    ) -> BlobRef:
        """Store the concatenation of ``chunks``, hashing while writing.

        An exception from the iterable (or a digest mismatch) removes the temp file and
        commits nothing. ``total`` is only passed on to ``progress``.
        """

        def fill(fd: int) -> tuple[str, int]:
            h = hashlib.sha256()
            size = 0
            for chunk in chunks:
                if not chunk:
                    continue
                h.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
                if progress is not None:
                    progress(size, total)
            return "sha256:" + h.hexdigest(), size

        return self._write_temp(fill, expected_digest)

    def import_file(
        self,
        src: str | os.PathLike[str],
        expected_digest: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> BlobRef:
        """Copy a file into the store, hashing it in the same pass.

        The file is read once: each chunk is hashed and written. On filesystems with reflinks
        (btrfs, XFS) the copy is a FICLONE and the pass only reads (hashing the clone, i.e.
        exactly the bytes committed). When ``expected_digest`` is given and that blob is
        already stored, the source is not read at all.
        """
        if expected_digest is not None:
            existing = self._existing(expected_digest)
            if existing is not None:
                if progress is not None:
                    progress(existing.size, existing.size)
                return existing
        try:
            src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(src)}: {exc.strerror}") from exc
        try:
            total = os.fstat(src_fd).st_size

            def fill(fd: int) -> tuple[str, int]:
                h = hashlib.sha256()
                buf = bytearray(CHUNK_SIZE)
                view = memoryview(buf)
                size = 0
                if _try_reflink(src_fd, fd):
                    while n := os.preadv(fd, [buf], size):
                        h.update(view[:n])
                        size += n
                        if progress is not None:
                            progress(size, total)
                else:
                    size = _pipelined_copy(src_fd, fd, h, total, progress)
                return "sha256:" + h.hexdigest(), size

            return self._write_temp(fill, expected_digest)
        finally:
            os.close(src_fd)

    def link_or_copy_known(
        self,
        src: str | os.PathLike[str],
        digest: str,
        progress: ProgressCallback | None = None,
    ) -> BlobRef:
        """Store a file whose digest the caller already knows and trusts (e.g. a cache hit).

        No hashing: a reflink (FICLONE) where the filesystem has them, else an in-kernel
        ``copy_file_range``, else a plain copy; then the size is checked against the source.
        Never a hard link (a later in-place edit of the source would corrupt the store).
        """
        want = normalize_digest(digest)
        existing = self._existing(want)
        if existing is not None:
            return existing
        try:
            src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"cannot read {os.fspath(src)}: {exc.strerror}") from exc
        try:
            total = os.fstat(src_fd).st_size

            def fill(fd: int) -> tuple[str, int]:
                if not _try_reflink(src_fd, fd) and not _copy_range(src_fd, fd, total, progress):
                    buf = bytearray(CHUNK_SIZE)
                    view = memoryview(buf)
                    done = 0
                    while n := os.preadv(src_fd, [buf], done):
                        _write_all(fd, view[:n])
                        done += n
                        if progress is not None:
                            progress(done, total)
                size = os.fstat(fd).st_size
                if size != total:
                    raise StoreError(
                        f"copy of {os.fspath(src)} is {size} bytes, expected {total}"
                        " (was the file changed while it was copied?)"
                    )
                return want, size

            return self._write_temp(fill, None)
        finally:
            os.close(src_fd)

    def remove(self, digest: str) -> bool:
        """Delete a blob file; True if it existed."""
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            return False
        return True
