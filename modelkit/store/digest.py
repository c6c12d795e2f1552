"""Content digests: ``sha256:<64 lowercase hex>`` (reference §3.1, §3.7).

Accepted on input: ``^sha256[:-][0-9a-fA-F]{64}$`` (Ollama's regex; ``-`` is the filename
form). Everything is normalised to ``sha256:`` + lowercase hex, and blob files are always
named ``sha256-<lowercase hex>``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from modelkit.errors import InvalidDigestError

__all__ = [
    "DIGEST_RE",
    "blob_filename",
    "digest_from_filename",
    "file_sha256",
    "is_valid_digest",
    "normalize_digest",
    "sha256_digest",
    "sha256_hex",
]

DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
_BLOB_FILENAME_RE = re.compile(r"^sha256-[0-9a-f]{64}$")


def is_valid_digest(digest: str) -> bool:
    """True for ``sha256:<hex>`` / ``sha256-<hex>`` (64 hex digits, any case)."""
    return isinstance(digest, str) and DIGEST_RE.fullmatch(digest) is not None


def normalize_digest(digest: str) -> str:
    """``sha256:<lowercase hex>``; raises :class:`InvalidDigestError` otherwise."""
    if not is_valid_digest(digest):
        raise InvalidDigestError(digest)
    return "sha256:" + digest[7:].lower()


def blob_filename(digest: str) -> str:
    """The blob's file name in ``blobs/``: ``sha256-<lowercase hex>``."""
    return "sha256-" + normalize_digest(digest)[7:]


def digest_from_filename(filename: str) -> str | None:
    """The digest a ``blobs/`` file name stands for, or None for any other file."""
    if _BLOB_FILENAME_RE.fullmatch(filename) is None:
        return None
    return "sha256:" + filename[7:]


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data`` (no prefix; e.g. a model digest)."""
    return hashlib.sha256(data).hexdigest()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of a file, read in chunks; ``progress`` gets each chunk's size."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return "sha256:" + h.hexdigest()
