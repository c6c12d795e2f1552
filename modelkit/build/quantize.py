"""Quantizing a build's model layer as ``ollama create --quantize`` does: llama.cpp in a child
process (``quantize_child``), cached by (source digest, type) in the build cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from modelkit.build.cache import BuildCache, FileStamp
from modelkit.build.layers import LayerStatus, PlannedLayer
from modelkit.errors import BuildError
from modelkit.exits import describe_exit
from modelkit.store import (
    MEDIA_TYPE_MODEL,
    BlobRef,
    GGUFInfo,
    Store,
    create_locked_temp,
    file_sha256,
    file_type_name,
    read_gguf_info,
    remove_stale_temps,
)

# (label, bytes done, bytes total); total 0 is a plain status line. Same as execute's.
Progress = Callable[[str, int, int], None]

PROGRESS_DIGEST = "0000000000000000000"
"""The digest Ollama puts on its ``quantizing ...`` progress events."""

VERIFYING = "verifying conversion"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class QuantType:
    """A type ``--quantize`` accepts: Ollama's name, ``general.file_type``, llama.cpp's
    ``LLAMA_FTYPE_*`` constant and the rough bits per weight of a quantized matrix."""

    name: str
    file_type: int
    llama_ftype: str
    bits: float


QUANT_TYPES = {
    t.name: t
    for t in (
        QuantType("F32", 0, "LLAMA_FTYPE_ALL_F32", 32.0),
        QuantType("F16", 1, "LLAMA_FTYPE_MOSTLY_F16", 16.0),
        QuantType("BF16", 32, "LLAMA_FTYPE_MOSTLY_BF16", 16.0),
        QuantType("Q8_0", 7, "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5),
        QuantType("Q4_K_S", 14, "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.6),
        QuantType("Q4_K_M", 15, "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.9),
    )
}
ALIASES = {"Q4_K": "Q4_K_M"}
SOURCE_TYPES = {0: "F32", 1: "F16", 32: "BF16"}
_TENSOR_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def parse_quant_type(text: str) -> QuantType:
    """The type ``text`` names (any case); Ollama's error for anything else."""
    name = text.strip().upper()
    found = QUANT_TYPES.get(ALIASES.get(name, name))
    if found is None:
        raise BuildError(
            f"unsupported quantization type {text} - supported types are"
            " F32, F16, Q4_K_S, Q4_K_M, Q8_0"
        )
    return found


def source_type(info: GGUFInfo) -> str:
    """F32, F16 or BF16: the type of a model that may be quantized; Ollama's error otherwise.

    A GGUF without ``general.file_type`` is named by its matrices' types."""
    if info.file_type_id is not None:
        name = SOURCE_TYPES.get(info.file_type_id)
    else:
        kinds = {t.type_name for t in info.tensors if len(t.shape) >= 2}
        name = next((k for k in ("F16", "BF16", "F32") if k in kinds), None)
        name = name if kinds <= set(_TENSOR_BYTES) else None
    if name is None:
        raise BuildError("quantization is only supported for F16, BF16 and F32 models")
    return name


def estimated_size(info: GGUFInfo, size: int, target: QuantType) -> int:
    """Roughly how big the quantized file will be (for progress while it grows)."""
    matrices = [t for t in info.tensors if len(t.shape) >= 2 and t.type_name in _TENSOR_BYTES]
    now = sum(t.n_elements * _TENSOR_BYTES[t.type_name] for t in matrices)
    after = sum(t.n_elements for t in matrices) * target.bits / 8
    return max(1, int(size - now + after))


@dataclass(frozen=True)
class QuantizeStep:
    """The planned quantization of the model layer at ``index`` of the plan's layers.

    ``source`` is the layer as it would be unquantized, read from ``source_path``;
    ``cached`` is the quantized blob when the cache already has it (a prediction that
    ``run_quantize`` checks again)."""

    index: int
    source: PlannedLayer
    source_path: Path
    source_type: str
    target: QuantType
    estimate: int
    tensors: int
    cached: BlobRef | None

    @property
    def status(self) -> str:
        return f"quantizing {self.source_type} model to {self.target.name}"

    def output(
        self, ref: BlobRef | None, status: LayerStatus, info: GGUFInfo | None
    ) -> PlannedLayer:
        """The model layer that replaces ``source``; its ``from`` stays the source's."""
        return PlannedLayer(
            media_type=MEDIA_TYPE_MODEL,
            source=f"{self.source.source} as {self.target.name}",
            status=status,
            digest=ref.digest if ref else None,
            size=ref.size if ref else self.estimate,
            from_=self.source.from_,
            gguf=info,
        )

    def describe(self) -> str:
        """One line for ``--dry-run``."""
        head = f"quantize: {self.source_type} -> {self.target.name}"
        if self.cached is not None:
            return f"{head}, cached ({self.cached.digest[7:19]})"
        if self.source.digest is None:
            return f"{head}, cache checked once the source is hashed"
        return f"{head}, not cached: llama.cpp will quantize it"


def plan_quantize(
    index: int, layer: PlannedLayer, store: Store, cache: BuildCache, target: QuantType
) -> QuantizeStep | None:
    """The step for ``layer`` (the model layer), or None when it already has that type."""
    path = _source_path(layer, store)
    info = read_gguf_info(path)
    kind = source_type(info)
    if kind == target.name:
        return None  # as in Ollama: the same type is no quantization at all
    hit = cached_blob(store, cache, layer.digest, target) if layer.digest else None
    estimate = estimated_size(info, layer.size, target)
    return QuantizeStep(index, layer, path, kind, target, estimate, len(info.tensors), hit)


def _source_path(layer: PlannedLayer, store: Store) -> Path:
    """The stored blob when there is one (it cannot change), else the local file."""
    if layer.digest is not None and store.has_blob(layer.digest):
        return store.blob_path(layer.digest)
    if layer.path is None:
        raise BuildError(f"the model layer {layer.digest} is not in the store")
    return layer.path


def cached_blob(
    store: Store, cache: BuildCache, source_digest: str, target: QuantType
) -> BlobRef | None:
    """The cached result, valid only while its blob is in the store with its size."""
    hit = cache.quantized(source_digest, target.name)
    if hit is None or not store.has_blob(hit.digest):
        return None
    return hit if store.blob_size(hit.digest) == hit.size else None


# -- execution ------------------------------------------------------------------------------


def run_quantize(
    step: QuantizeStep, store: Store, cache: BuildCache, progress: Progress | None = None
) -> tuple[PlannedLayer, GGUFInfo]:
    """The quantized model layer (from the cache, or made now) and its GGUF facts."""
    report: Progress = progress or (lambda label, done, total: None)
    digest = step.source.digest or _hash_source(step, cache, report)
    hit = cached_blob(store, cache, digest, step.target)
    if hit is not None:
        info = cache.gguf_info(hit.digest) or read_gguf_info(store.blob_path(hit.digest))
        return step.output(hit, "cached", info), info
    ref, info = _quantize_into_store(step, store, report)
    cache.remember_quantized(digest, step.target.name, ref)
    cache.remember_gguf(ref.digest, info)
    cache.save()  # the blob is stored: a failing check later must not make it unknown
    return step.output(ref, "new", info), info


def _hash_source(step: QuantizeStep, cache: BuildCache, report: Progress) -> str:
    """The sha256 of a local source not hashed before (remembered for the next build)."""
    path = step.source_path
    stamp = FileStamp.of(path)
    done = 0

    def read(n: int) -> None:
        nonlocal done
        done += n
        report(f"hashing {path.name}", done, stamp.size)

    digest = file_sha256(path, read)
    if FileStamp.of(path) != stamp:
        raise BuildError(f"{path} changed while it was being hashed; build again")
    cache.remember_file(path, stamp, digest)
    return digest


def _quantize_into_store(
    step: QuantizeStep, store: Store, report: Progress
) -> tuple[BlobRef, GGUFInfo]:
    total = step.source.size

    def grown(size: int) -> None:
        report(step.status, min(total - 1, size * total // step.estimate), total)

    work = store.root / ".modelkit" / "quantize"
    remove_stale_temps(work)  # left by a killed build
    fd, tmp = create_locked_temp(work, label="quantize-")
    try:
        stamp = FileStamp.of(step.source_path)
        report(step.status, 0, total)
        run_child(step.source_path, tmp, step.target, grown)
        if FileStamp.of(step.source_path) != stamp:
            raise BuildError(f"{step.source_path} changed while it was quantized; build again")
        report(step.status, total, total)
        report(VERIFYING, 0, 0)
        info = verify(tmp, step)
        ref = store.import_file(tmp)  # hashed, fsynced and renamed into blobs/
        return ref, replace(info, path=str(store.blob_path(ref.digest)))
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


def verify(path: Path, step: QuantizeStep) -> GGUFInfo:
    """The output is a GGUF of the asked type with the source's tensors."""
    try:
        info = read_gguf_info(path)
    except Exception as err:
        raise BuildError(f"{step.status}: the output is not a GGUF: {err}") from None
    got = info.file_type_id or 0
    if got != step.target.file_type or len(info.tensors) != step.tensors:
        raise BuildError(
            f"{step.status}: the output has file type {file_type_name(got)} and"
            f" {len(info.tensors)} tensors, not {step.target.name} and {step.tensors}"
        )
    return info


def child_command(src: Path, dst: Path, target: QuantType) -> list[str]:
    try:
        threads = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        threads = os.cpu_count() or 1
    module = "modelkit.build.quantize_child"
    return [sys.executable, "-m", module, str(src), str(dst), target.llama_ftype, str(threads)]


def run_child(src: Path, dst: Path, target: QuantType, grown: Callable[[int], None]) -> None:
    """Run llama.cpp's quantize in a child process; ``grown(size)`` while ``dst`` grows."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            child_command(src, dst, target),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            while not _waited(proc):
                grown(_size(dst))
        finally:
            if proc.poll() is None:  # interrupted here: do not leave it running
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise BuildError(
                f"quantizing to {target.name} failed: llama.cpp's quantize process ended with"
                f" {describe_exit(proc.returncode)}{_tail(err)}"
            )


def _waited(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=POLL_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(err: IO[bytes], lines: int = 12) -> str:
    err.seek(0)
    text = err.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n    {line}" for line in kept)
