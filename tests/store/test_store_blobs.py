"""Blob writes: digests, atomicity, verification, fast paths, crash safety."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelkit.errors import BlobNotFoundError, DigestMismatchError, InvalidDigestError, StoreError
from modelkit.store import (
    TEMP_PREFIX,
    BlobRef,
    Store,
    blob_filename,
    digest_from_filename,
    is_valid_digest,
    normalize_digest,
)

HI = "sha256:f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_dir_names(store: Store) -> list[str]:
    d = store.blobs.directory
    return sorted(os.listdir(d)) if d.exists() else []


def test_digest_helpers() -> None:
    hexd = HI[7:]
    assert is_valid_digest(HI) and is_valid_digest("sha256-" + hexd.upper())
    assert not is_valid_digest("sha256:" + hexd[:-1])
    assert not is_valid_digest("sha512:" + hexd)
    assert not is_valid_digest("sha256:../../" + hexd[6:])
    assert normalize_digest("sha256-" + hexd.upper()) == HI
    assert blob_filename(HI) == "sha256-" + hexd
    assert digest_from_filename("sha256-" + hexd) == HI
    assert digest_from_filename("sha256-" + hexd + "-partial") is None
    assert digest_from_filename(TEMP_PREFIX + "1-abc") is None
    with pytest.raises(InvalidDigestError, match="invalid digest format"):
        normalize_digest("sha256:xyz")


def test_write_bytes_system_layer_vector(store: Store) -> None:
    ref = store.write_bytes(b"Say hi!")
    assert ref == BlobRef(HI, 7)
    path = store.blob_path(HI)
    assert path == store.root / "blobs" / ("sha256-" + HI[7:])
    assert path.read_bytes() == b"Say hi!"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o755 == 0o755
    assert store.has_blob(HI) and store.has_blob("sha256-" + HI[7:].upper())
    assert store.blob_size(HI) == 7
    with store.open_blob(HI) as f:
        assert f.read() == b"Say hi!"
    assert store.verify_blob(HI) == ref
    # Writing the same bytes again reuses the blob (and touches it).
    os.utime(path, (1, 1))
    assert store.write_bytes(b"Say hi!") == ref
    assert path.stat().st_mtime > 1
    assert blob_dir_names(store) == ["sha256-" + HI[7:]]


def test_missing_and_invalid(store: Store) -> None:
    missing = digest_of(b"nope")
    assert not store.has_blob(missing)
    with pytest.raises(BlobNotFoundError, match="not found"):
        store.open_blob(missing)
    with pytest.raises(BlobNotFoundError):
        store.verify_blob(missing)
    with pytest.raises(InvalidDigestError):
        store.blob_path("sha256:../../etc/passwd")


def test_verify_blob_detects_corruption(store: Store) -> None:
    ref = store.write_bytes(b"original bytes")
    path = store.blob_path(ref.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered bytes")
    with pytest.raises(DigestMismatchError) as info:
        store.verify_blob(ref.digest)
    assert info.value.expected == ref.digest
    assert info.value.got == digest_of(b"tampered bytes")


def test_write_stream(store: Store) -> None:
    chunks = [b"a" * 1000, b"", b"b" * 5000, b"c"]
    seen: list[tuple[int, int]] = []
    ref = store.write_stream(iter(chunks), progress=lambda d, t: seen.append((d, t)), total=6001)
    data = b"".join(chunks)
    assert ref == BlobRef(digest_of(data), len(data))
    assert store.blob_path(ref.digest).read_bytes() == data
    assert seen[-1] == (6001, 6001)
    assert blob_dir_names(store) == [blob_filename(ref.digest)]


def test_interrupted_stream_commits_nothing(store: Store) -> None:
    store.write_bytes(b"already here")
    before = blob_dir_names(store)

    def broken() -> Iterator[bytes]:
        yield b"x" * 100_000
        yield b"y" * 100_000
        raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        store.write_stream(broken())
    assert blob_dir_names(store) == before  # no final blob, no temp file left


@pytest.mark.parametrize("how", ["bytes", "stream", "file"])
def test_digest_mismatch_commits_nothing(store: Store, tmp_path: Path, how: str) -> None:
    data = b"some content"
    wrong = digest_of(b"other content")
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with pytest.raises(DigestMismatchError) as info:
        if how == "bytes":
            store.write_bytes(data, expected_digest=wrong)
        elif how == "stream":
            store.write_stream([data], expected_digest=wrong)
        else:
            store.import_file(src, expected_digest=wrong)
    assert info.value.expected == wrong
    assert info.value.got == digest_of(data)
    assert blob_dir_names(store) == []  # nothing committed, temp removed
    assert not store.has_blob(digest_of(data))


def test_import_file_one_pass(store: Store, tmp_path: Path) -> None:
    data = os.urandom(17 * 1024 * 1024 + 17)  # several chunks through the pipeline
    src = tmp_path / "model.gguf"
    src.write_bytes(data)
    seen: list[tuple[int, int]] = []
    ref = store.import_file(src, progress=lambda d, t: seen.append((d, t)))
    assert ref == BlobRef(digest_of(data), len(data))
    assert store.blob_path(ref.digest).read_bytes() == data
    assert stat.S_IMODE(store.blob_path(ref.digest).stat().st_mode) == 0o644
    assert seen and seen[-1] == (len(data), len(data))
    # With the expected digest given and the blob present, the source is not even read.
    src.unlink()
    assert store.import_file(src, expected_digest=ref.digest) == ref
    with pytest.raises(StoreError, match="cannot read"):
        store.import_file(tmp_path / "missing.gguf")


def test_import_file_with_expected_digest(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload")
    ref = store.import_file(
        src, expected_digest=digest_of(b"payload").upper().replace("SHA256:", "sha256-")
    )
    assert ref.digest == digest_of(b"payload")


def test_link_or_copy_known(store: Store, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    src = tmp_path / "cached.gguf"
    src.write_bytes(data)
    digest = digest_of(data)
    ref = store.link_or_copy_known(src, digest)
    assert ref == BlobRef(digest, len(data))
    assert store.blob_path(digest).read_bytes() == data
    assert store.verify_blob(digest) == ref
    # Not a hard link: editing the source later cannot corrupt the store.
    assert store.blob_path(digest).stat().st_ino != src.stat().st_ino
    assert store.link_or_copy_known(src, digest) == ref  # already there
    assert [n for n in blob_dir_names(store) if n.startswith(TEMP_PREFIX)] == []


def test_existing_blob_with_wrong_size_is_replaced(store: Store) -> None:
    ref = store.write_bytes(b"full content")
    path = store.blob_path(ref.digest)
    path.write_bytes(b"full")  # a truncated leftover under the final name
    assert store.write_bytes(b"full content") == ref
    assert path.read_bytes() == b"full content"


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelkit.store import Store

    store = Store(Path(sys.argv[1]))
    marker = Path(sys.argv[2])

    def chunks():
        yield b"partial data " * 10000
        marker.write_text("ready")
        while True:
            time.sleep(1)
            yield b""

    store.write_stream(chunks())
    """
)


def _start_writer(store: Store, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    marker = tmp_path / "marker"
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_WRITER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), *sys.path])
    proc = subprocess.Popen([sys.executable, str(script), str(store.root), str(marker)], env=env)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, "writer exited early"
        assert time.monotonic() < deadline, "writer did not start"
        time.sleep(0.02)
    return proc, marker


def test_killed_writer_leaves_no_final_blob(store: Store, tmp_path: Path) -> None:
    proc, _ = _start_writer(store, tmp_path)
    temps = [n for n in blob_dir_names(store) if n.startswith(TEMP_PREFIX)]
    assert len(temps) == 1
    temp = store.blobs.directory / temps[0]
    os.utime(temp, (time.time() - 3600, time.time() - 3600))
    # A live writer's temp file is never reported stale or pruned, however old.
    assert store.blobs.stale_temp_files() == []
    store.prune()
    assert temp.exists()

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = blob_dir_names(store)
    assert all(digest_from_filename(n) is None for n in names)  # no final-named partial blob
    assert store.blobs.stale_temp_files() == [temp]
    store.prune()
    assert blob_dir_names(store) == []
