"""Conversions kept by their inputs: ``<store>/.modelkit/converted/<key>.gguf``, where the key
hashes each selected file's name and sha256 with the converter's version."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from modelkit.build.cache import BuildCache, FileStamp
from modelkit.build.convert.files import Selection
from modelkit.build.convert.writer import ConvertProgress, check_convertible, convert
from modelkit.store import Store, file_sha256

CONVERTER_VERSION = "modelkit-convert-1"
"""Bump when the converter's output changes, so old conversions are not reused."""


def converted_dir(store_root: Path) -> Path:
    return store_root / ".modelkit" / "converted"


def input_digests(
    selection: Selection,
    cache: BuildCache,
    known: Mapping[str, str] | None = None,
    progress: ConvertProgress | None = None,
) -> list[tuple[str, str]]:
    """(key, sha256) of every selected file, sorted; unchanged files are not re-hashed, and
    ``progress`` sees the bytes of those that are."""
    todo: list[tuple[str, Path, FileStamp]] = []
    out = []
    for path in selection.files:
        key = selection.key(path)
        stamp = FileStamp.of(path)
        digest = (known or {}).get(key) or cache.digest_for(path, stamp)
        if digest is None:
            todo.append((key, path, stamp))
        else:
            out.append((key, digest))
    total = sum(stamp.size for _, _, stamp in todo)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for key, path, stamp in todo:
        digest = file_sha256(path, step)
        cache.remember_file(path, stamp, digest)
        out.append((key, digest))
    return sorted(out)


def cache_key(digests: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(CONVERTER_VERSION.encode())
    for key, digest in digests:
        h.update(f"\n{key}\0{digest}".encode())
    return h.hexdigest()


def convert_cached(
    selection: Selection,
    store: Store,
    progress: ConvertProgress | None = None,
    known: Mapping[str, str] | None = None,
    hashing: ConvertProgress | None = None,
) -> tuple[Path, bool]:
    """The converted GGUF of ``selection`` and whether it came from the cache. ``known``
    gives digests already known by key (``/api/create`` blobs), saving a hash pass;
    ``hashing`` and ``progress`` see the bytes hashed and converted.

    Once a build has copied a conversion into the store (the build cache knows the file's
    digest and the blob is there), the copy here is dropped and the blob itself is returned,
    so a converted model takes its disk space once."""
    check_convertible(selection)
    folder = converted_dir(store.root)
    cache = BuildCache(folder / "input-digests.json")
    key = cache_key(input_digests(selection, cache, known, hashing))
    cache.save()
    out = folder / f"{key}.gguf"
    stored = _stored_blob(store, out, folder / f"{key}.digest")
    if stored is not None:
        return stored, True
    if out.is_file():
        return out, True
    return convert(selection, out, progress), False


def _stored_blob(store: Store, out: Path, pointer: Path) -> Path | None:
    """The store's blob of the conversion ``out`` (dropping ``out``), when there is one."""
    try:
        digest: str | None = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        digest = None
    if not digest and out.is_file():
        digest = BuildCache.for_store(store.root).digest_for(out, FileStamp.of(out))
        if digest and store.has_blob(digest) and store.blob_size(digest) == out.stat().st_size:
            pointer.write_text(digest, encoding="utf-8")
    if not digest or not store.has_blob(digest):
        return None
    out.unlink(missing_ok=True)
    return store.blob_path(digest)
