"""Deterministic, uncompressed tar layers streamed from files or bytes, and their digests.
Owns the tar byte format, the streaming hash pass and the on-disk cache of layer digests.

A layer's bytes depend only on its entries (paths, modes, contents): every header has mtime
0, uid/gid 0, empty user/group names, files 0o444 and directories 0o555, entries sorted with
their parent directories first, POSIX (PAX) headers. The same GGUF therefore gives the same
layer digest on any machine, any day. Nothing is ever buffered whole or copied to hash it:
the digest comes from one streaming pass, and the same bytes can be streamed again into any
writer (a file, an HTTP upload, an outer tar).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelkit.errors import ImageError

__all__ = [
    "FORMAT_VERSION",
    "LAYER_MEDIA_TYPE",
    "BytesFn",
    "Layer",
    "LayerCache",
    "LayerFile",
    "LayerSpec",
    "TarMember",
    "atomic_write_bytes",
    "compute_layer",
    "file_chunks",
    "iter_tar",
    "tar_size",
]

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"

FORMAT_VERSION = 1
"""Bumped whenever the bytes written for the same inputs change (it is part of cache keys)."""

FILE_MODE = 0o444
DIR_MODE = 0o555
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tarfile (and GNU tar) pad archives to whole records
READ_SIZE = 4 << 20

BytesFn = Callable[[int], None]
"""``on_bytes(n)``: called after each chunk of ``n`` content bytes has passed."""

ChunkSource = Callable[[], Iterator[bytes]]


# -- the tar byte format -------------------------------------------------------------------


@dataclass(frozen=True)
class TarMember:
    """One tar entry: a directory, or a regular file whose bytes ``content()`` streams."""

    name: str
    """Relative POSIX path inside the archive (no leading ``/``)."""
    size: int = 0
    mode: int = FILE_MODE
    is_dir: bool = False
    content: ChunkSource | None = None

    def header(self) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.type = tarfile.DIRTYPE if self.is_dir else tarfile.REGTYPE
        info.size = 0 if self.is_dir else self.size
        info.mode = self.mode
        # Fixed metadata is the whole point: nothing about the machine or the day leaks in.
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        # PAX keeps names over 100 bytes and files over 8 GiB exact, where ustar cannot.
        return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> int:
    return -size % BLOCK


def tar_size(members: Iterable[TarMember]) -> int:
    """The archive's byte count, known without reading any content."""
    total = 0
    for m in members:
        total += len(m.header())
        if not m.is_dir:
            total += m.size + _padding(m.size)
    total += 2 * BLOCK
    return total + (-total % RECORD)


def iter_tar(members: Iterable[TarMember], on_bytes: BytesFn | None = None) -> Iterator[bytes]:
    """The archive as chunks, members in the order given; each file's content must yield
    exactly its declared size (a file changed since it was measured is an error, not a
    silently different layer)."""
    total = 0
    for m in members:
        head = m.header()
        total += len(head)
        yield head
        if m.is_dir:
            continue
        sent = 0
        if m.content is not None:
            for chunk in m.content():
                sent += len(chunk)
                if sent > m.size:
                    break
                yield chunk
                if on_bytes is not None:
                    on_bytes(len(chunk))
        if sent != m.size:
            raise ImageError(
                f"{m.name}: expected {m.size} bytes, its source gave"
                f" {'more' if sent > m.size else sent} (was it changed meanwhile?)"
            )
        pad = _padding(m.size)
        total += m.size + pad
        if pad:
            yield bytes(pad)
    end = 2 * BLOCK
    total += end
    yield bytes(end + (-total % RECORD))


def file_chunks(path: Path, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Stream ``length`` bytes of a file from ``offset`` (to its end when None)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        pos = offset
        end = os.fstat(fd).st_size if length is None else offset + length
        while pos < end:
            chunk = os.pread(fd, min(READ_SIZE, end - pos), pos)
            if not chunk:
                return
            pos += len(chunk)
            yield chunk
    finally:
        os.close(fd)


# -- layers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFile:
    """A file placed in a layer: its absolute path in the image and where its bytes come from.

    ``digest`` is the content's ``sha256:<hex>``; for store blobs it is the blob's name (content
    addressed, so trusted), for bytes it is computed. It keys the layer cache: a file without
    one makes its layer uncacheable.
    """

    path: str
    source: Path | bytes
    size: int
    digest: str | None = None
    mode: int = FILE_MODE

    @classmethod
    def from_bytes(cls, path: str, data: bytes, mode: int = FILE_MODE) -> LayerFile:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return cls(path, data, len(data), digest, mode)

    @classmethod
    def from_file(
        cls, path: str, source: Path, digest: str | None = None, mode: int = FILE_MODE
    ) -> LayerFile:
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise ImageError(f"cannot read {source}: {exc.strerror}") from exc
        return cls(path, source, size, digest, mode)

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.source, bytes):
            yield self.source
        else:
            yield from file_chunks(self.source)


def _archive_name(image_path: str) -> PurePosixPath:
    p = PurePosixPath("/", image_path)
    if any(part in ("..", ".") for part in p.parts) or p == PurePosixPath("/"):
        raise ImageError(f"bad path for a file in an image: {image_path!r}")
    return p.relative_to("/")


@dataclass(frozen=True)
class LayerSpec:
    """The inputs of one layer: its files (any order given; the tar is always sorted)."""

    files: tuple[LayerFile, ...]
    created_by: str = ""
    """A line for the image config's history (what put this layer there)."""

    def members(self) -> list[TarMember]:
        """Every tar entry, parents before children, sorted by path components."""
        files: dict[PurePosixPath, LayerFile] = {}
        dirs: set[PurePosixPath] = set()
        for f in self.files:
            name = _archive_name(f.path)
            if name in files and files[name] != f:
                raise ImageError(f"two different files for {f.path} in one layer")
            files[name] = f
            dirs.update(p for p in name.parents if p != PurePosixPath("."))
        clash = dirs & files.keys()
        if clash:
            raise ImageError(f"{sorted(map(str, clash))[0]} is both a file and a directory")
        out: list[tuple[tuple[str, ...], TarMember]] = []
        for d in dirs:
            out.append((d.parts, TarMember(str(d), mode=DIR_MODE, is_dir=True)))
        for name, f in files.items():
            out.append((name.parts, TarMember(str(name), f.size, f.mode, False, f.chunks)))
        out.sort(key=lambda item: item[0])
        return [m for _, m in out]

    @property
    def size(self) -> int:
        return tar_size(self.members())

    @property
    def content_size(self) -> int:
        """Bytes of file content (what a progress bar counts)."""
        return sum(f.size for f in self.files)

    def cache_key(self) -> str | None:
        """A digest of everything the layer's bytes depend on, or None when a file's content
        digest is unknown."""
        entries = []
        for f in sorted(self.files, key=lambda f: _archive_name(f.path).parts):
            if f.digest is None:
                return None
            entries.append([str(_archive_name(f.path)), f.mode, f.digest, f.size])
        key = json.dumps({"format": FORMAT_VERSION, "files": entries}, separators=(",", ":"))
        return hashlib.sha256(key.encode()).hexdigest()

    def stream(self, on_bytes: BytesFn | None = None) -> Iterator[bytes]:
        """The layer's tar bytes, again and again identical."""
        return iter_tar(self.members(), on_bytes)


@dataclass(frozen=True)
class Layer:
    """A layer whose digest and size are known: ``spec.stream()`` yields exactly those bytes.

    Uncompressed, so its diff_id (the config's ``rootfs.diff_ids``) is its digest.
    """

    spec: LayerSpec
    digest: str
    size: int
    media_type: str = LAYER_MEDIA_TYPE

    def stream(self, on_bytes: BytesFn | None = None) -> Iterator[bytes]:
        return self.spec.stream(on_bytes)


def hash_layer(spec: LayerSpec, on_bytes: BytesFn | None = None) -> tuple[str, int]:
    """One streaming pass over the layer's bytes: ``(sha256:<hex>, size)``."""
    h = hashlib.sha256()
    size = 0
    for chunk in spec.stream(on_bytes):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


# -- the cache of layer digests --------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so a reader sees the old or the new bytes, never a torn mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class LayerCache:
    """``cache key → (digest, size)`` in a JSON file (``<store>/.modelkit/image-layers.json``).

    Re-assembling the same model then costs no hashing of its GBs. Entries are only hints
    checked against the layer's computed size; a lost update (two writers at once) only costs
    a re-hash later, so no lock is taken.
    """

    MAX_ENTRIES = 512

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None

    @classmethod
    def for_store(cls, store_root: Path) -> LayerCache:
        return cls(store_root / ".modelkit" / "image-layers.json")

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_bytes())
            except (OSError, ValueError):
                data = {}
            layers = data.get("layers") if isinstance(data, dict) else None
            ok = isinstance(data, dict) and data.get("version") == FORMAT_VERSION
            self._entries = dict(layers) if ok and isinstance(layers, dict) else {}
        return self._entries

    def get(self, key: str) -> tuple[str, int] | None:
        entry = self._load().get(key)
        if not isinstance(entry, dict):
            return None
        digest, size = entry.get("digest"), entry.get("size")
        if isinstance(digest, str) and isinstance(size, int):
            return digest, size
        return None

    def put(self, key: str, digest: str, size: int) -> None:
        entries = self._load()
        entries.pop(key, None)
        entries[key] = {"digest": digest, "size": size}
        while len(entries) > self.MAX_ENTRIES:  # oldest first: dicts keep insertion order
            entries.pop(next(iter(entries)))
        data = {"version": FORMAT_VERSION, "layers": entries}
        # A read-only store still assembles; it just re-hashes next time.
        with contextlib.suppress(OSError):
            atomic_write_bytes(self.path, json.dumps(data, indent=1).encode() + b"\n")


def compute_layer(
    spec: LayerSpec, cache: LayerCache | None = None, on_bytes: BytesFn | None = None
) -> Layer:
    """The layer's digest and size: from the cache when its inputs are known, else hashed."""
    key = spec.cache_key() if cache is not None else None
    if cache is not None and key is not None:
        hit = cache.get(key)
        if hit is not None and hit[1] == spec.size:
            return Layer(spec, hit[0], hit[1])
    digest, size = hash_layer(spec, on_bytes)
    if cache is not None and key is not None:
        cache.put(key, digest, size)
    return Layer(spec, digest, size)
