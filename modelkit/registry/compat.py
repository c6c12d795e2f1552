"""Can the bundled llama.cpp load a pulled model? Checked right after a pull, not at first use.

:func:`check_pulled` reads the model layer's GGUF header (:func:`read_gguf_info`) and, when
``llama_cpp`` is installed, loads the file with ``vocab_only=True`` through the low-level API
(header, metadata and tokenizer only; no tensors are read) in a child process
(``python -m modelkit.registry.compat PATH``): a GGUF that crashes llama.cpp fails the check
instead of the server, which never loads llama.cpp itself. A failure raises a
:class:`~modelkit.errors.RegistryError` naming the architecture and suggesting a GGUF source.
The pulled model stays in the store: the caller reports the error; ``modelkit rm`` removes it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelkit.cpu import amx_allowed, apply_kernels
from modelkit.errors import RegistryError, StoreError
from modelkit.store import MEDIA_TYPE_MODEL, Store, StoredManifest, read_gguf_info

__all__ = ["check_gguf", "check_pulled"]


def _suggestion() -> str:
    return (
        "pull or build it from a GGUF that this llama.cpp supports instead, e.g. a "
        "hf.co/<user>/<repo>:<quant> name, or FROM a local .gguf converted with a newer "
        "llama.cpp"
    )


def _llama_accepts(path: Path) -> bool | None:
    """True/False: llama.cpp's verdict on a ``vocab_only`` load, made in a child process;
    None: llama_cpp is not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    child = subprocess.run(
        [sys.executable, "-m", "modelkit.registry.compat", os.fspath(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return child.returncode == 0  # 1: refused; a signal: it crashed llama.cpp


def _load_vocab(path: Path) -> bool:
    """The check itself, in the child: can llama.cpp load ``path``'s vocabulary?"""
    import llama_cpp

    lib: Any = llama_cpp
    params = lib.llama_model_default_params()
    params.vocab_only = True
    params.use_mmap = True
    params.n_gpu_layers = 0
    apply_kernels(lib, params, allow_amx=amx_allowed())
    model = lib.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        return False
    lib.llama_model_free(model)
    return True


def check_gguf(path: Path, *, name: str = "model") -> str:
    """Raise :class:`RegistryError` unless llama.cpp can load ``path``; returns the arch."""
    try:
        info = read_gguf_info(path)
    except StoreError as exc:
        raise RegistryError(f"{name}: the model layer is not a usable GGUF ({exc})") from exc
    arch = info.architecture or "(none)"
    if info.is_adapter or info.is_projector:
        return arch
    if _llama_accepts(path) is False:
        raise RegistryError(
            f'{name}: model architecture "{arch}" is not supported by the bundled llama.cpp '
            f"(it cannot load this GGUF); {_suggestion()}. The pulled model was kept in "
            "the store; remove it with `modelkit rm`."
        )
    return arch


def check_pulled(store: Store, stored: StoredManifest) -> list[str]:
    """Check every model layer of a pulled manifest; returns their architectures."""
    archs = []
    for layer in stored.manifest.layers:
        if layer.media_type == MEDIA_TYPE_MODEL:
            archs.append(check_gguf(store.blob_path(layer.digest), name=stored.name.display))
    return archs


if __name__ == "__main__":
    sys.exit(0 if len(sys.argv) == 2 and _load_vocab(Path(sys.argv[1])) else 1)
