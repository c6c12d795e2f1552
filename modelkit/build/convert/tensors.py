"""Safetensors weights read without torch: every tensor of the selected files by name, as a
numpy view of the file (BF16 widened to float32 by hand, since numpy has no bfloat16)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError, safe_open

from modelkit.errors import BuildError

_DTYPES: dict[str, npt.DTypeLike] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened in ``read``
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes are: its file, dtype, shape and byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _header(path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(size)
    header = json.loads(raw)
    header.pop("__metadata__", None)
    return 8 + size, header


def index_tensors(files: tuple[Path, ...]) -> dict[str, TensorRef]:
    """Every tensor of ``files`` by name; a file that is not safetensors is a BuildError."""
    refs: dict[str, TensorRef] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="numpy") as handle:  # validates the file
                names = set(handle.keys())
            base, header = _header(path)
        except (SafetensorError, OSError, ValueError, struct.error) as err:
            raise BuildError(f"{path.name}: not a readable safetensors file: {err}") from None
        for name in sorted(names):
            entry = header[name]
            start, end = (int(x) for x in entry["data_offsets"])
            dtype = str(entry["dtype"])
            if dtype not in _DTYPES:
                raise BuildError(f"{path.name}: tensor {name} has unsupported dtype {dtype}")
            shape = tuple(int(d) for d in entry["shape"])
            refs[name] = TensorRef(name, path, dtype, shape, base + start, base + end)
    return refs


def read(ref: TensorRef) -> npt.NDArray[np.generic]:
    """The tensor as a numpy array mapped from its file (BF16 comes back as float32)."""
    count = int(np.prod(ref.shape)) if ref.shape else 1
    raw = np.memmap(ref.file, dtype=_DTYPES[ref.dtype], mode="r", offset=ref.start, shape=(count,))
    if ref.dtype == "BF16":
        widened: npt.NDArray[np.uint32] = np.left_shift(raw, 16, dtype=np.uint32)
        return widened.view(np.float32).reshape(ref.shape)  # bf16 is float32's top half
    return np.asarray(raw).reshape(ref.shape)
