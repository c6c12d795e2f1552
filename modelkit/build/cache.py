"""The build cache: which digest a local file had at a given (path, size, mtime, inode), the
GGUF facts of each digest, and the blob each (source digest, type) was quantized to, so an
unchanged multi-GB GGUF is never re-hashed, re-read or re-quantized.

It lives in ``<store>/.modelkit/build-cache.json`` (Ollama ignores that folder) and is only a
hint: a hit is used only while the blob is still in the store with the same size.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelkit.store import BlobRef, GGUFInfo

_VERSION = 2

# The cache keeps the scalar GGUF facts a build needs; the full metadata and tensor list
# stay in the file (reading them again is cheap and they would bloat every rebuild).
_BULKY_FIELDS = ("metadata", "array_lengths", "tensors")


@dataclass(frozen=True)
class FileStamp:
    """What must be unchanged for a cached digest of a file to still hold."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = path.stat()
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


class BuildCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, dict[str, Any]] = {}
        self._gguf: dict[str, dict[str, Any]] = {}
        self._quantized: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._load()

    @classmethod
    def for_store(cls, store_root: Path) -> BuildCache:
        return cls(store_root / ".modelkit" / "build-cache.json")

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # a missing or damaged cache is just a cold cache
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return
        self._files = dict(data.get("files", {}))
        self._gguf = dict(data.get("gguf", {}))
        self._quantized = dict(data.get("quantized", {}))

    def digest_for(self, path: Path, stamp: FileStamp) -> str | None:
        entry = self._files.get(str(path))
        if entry is None or entry.get("stamp") != asdict(stamp):
            return None
        digest = entry.get("digest")
        return digest if isinstance(digest, str) else None

    def remember_file(self, path: Path, stamp: FileStamp, digest: str) -> None:
        self._files[str(path)] = {"stamp": asdict(stamp), "digest": digest}
        self._dirty = True

    def gguf_info(self, digest: str) -> GGUFInfo | None:
        entry = self._gguf.get(digest)
        if entry is None:
            return None
        try:
            return GGUFInfo(**entry, metadata={}, array_lengths={}, tensors=())
        except TypeError:
            return None  # written by another version of GGUFInfo

    def remember_gguf(self, digest: str, info: GGUFInfo) -> None:
        facts = asdict(info)
        for name in _BULKY_FIELDS:
            facts.pop(name, None)
        self._gguf[digest] = facts
        self._dirty = True

    def quantized(self, source_digest: str, type_name: str) -> BlobRef | None:
        """The blob ``source_digest`` was quantized to as ``type_name`` (a hint: the caller
        checks that it is still in the store with this size)."""
        entry = self._quantized.get(f"{source_digest} {type_name}")
        if not isinstance(entry, dict):
            return None
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not isinstance(size, int):
            return None
        return BlobRef(digest, size)

    def remember_quantized(self, source_digest: str, type_name: str, ref: BlobRef) -> None:
        self._quantized[f"{source_digest} {type_name}"] = {"digest": ref.digest, "size": ref.size}
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {
                "version": _VERSION,
                "files": self._files,
                "gguf": self._gguf,
                "quantized": self._quantized,
            }
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".build-cache-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False
