"""llama-cpp-python, imported lazily with its backend set up once, and a model's weights as
llama.cpp holds them: vocabulary (tokenize, detokenize), GGUF metadata, LoRA adapters.

Everything here reads the weights only, so any thread may call it while a context decodes.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import threading
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any, Final

from modelkit.cpu import CpuKernels, apply_kernels
from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.options import LoadParams

__all__ = ["Weights", "built_with_openmp", "internals", "llama"]

log = logging.getLogger(__name__)

POOLING_NONE: Final = 0
POOLING_LAST: Final = 3
POOLING_UNSPECIFIED: Final = -1

_backend_lock = threading.Lock()
_backend_ready = False


def llama() -> Any:
    """The ``llama_cpp`` module (imported lazily: it is an optional dependency)."""
    global _backend_ready
    try:
        import llama_cpp
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise InferenceError(
            "llama-cpp-python is not installed (pip install 'modelkit[runtime]')"
        ) from err
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
            info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
            if built_with_openmp(info):
                log.warning(
                    "llama-cpp-python was built with OpenMP: generation called from worker "
                    "threads runs about 2x slower; reinstall it with "
                    "CMAKE_ARGS=-DGGML_OPENMP=OFF pip install --no-cache-dir llama-cpp-python"
                )
    return llama_cpp


def built_with_openmp(system_info: str) -> bool:
    """Whether llama.cpp's ``llama_print_system_info()`` text says OpenMP is compiled in."""
    return "OPENMP = 1" in system_info


def internals() -> Any:
    """``llama_cpp._internals``: the wrappers of llama_model, llama_context, batches and
    sampler chains (untyped, hence ``Any``)."""
    llama()
    return importlib.import_module("llama_cpp._internals")


class Weights:
    """One GGUF file (plus LoRA adapters) loaded by llama.cpp; ``close()`` frees it.

    A missing or broken weights file or adapter raises :class:`InferenceError` here.
    """

    def __init__(
        self, path: Path, adapters: Seq[Path], load: LoadParams, *, verbose: bool = False
    ) -> None:
        llama_cpp = llama()
        if not verbose:
            # llama-cpp-python maps ggml's log levels with an older numbering (ggml's WARN
            # arrives as ERROR, its ERROR as DEBUG), so ERROR would let warnings through.
            logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        if not path.is_file():
            raise InferenceError(f"model weights not found: {path}")
        self.path = path
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = load.n_gpu_layers
        mparams.main_gpu = load.main_gpu
        mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if load.use_mmap else 0
        self.kernels: CpuKernels = apply_kernels(
            llama_cpp, mparams, allow_amx=load.allow_amx, safe=load.safe_kernels
        )
        try:
            # verbose=True: do not let the wrapper redirect file descriptors (not
            # thread-safe); llama.cpp's log output is filtered by the logger level instead.
            self.model: Any = internals().LlamaModel(
                path_model=str(path), params=mparams, verbose=True
            )
        except (ValueError, RuntimeError) as err:
            raise InferenceError(f"failed to load model {path}: {err}") from None
        try:
            self.vocab: Any = self.model.vocab
            self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self.model.model)
            self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
            self.n_embd: int = llama_cpp.llama_model_n_embd(self.model.model)
            self.n_embd_out: int = llama_cpp.llama_model_n_embd_out(self.model.model) or self.n_embd
            self.adapters: list[Any] = [self._load_adapter(llama_cpp, p) for p in adapters]
        except BaseException:
            self.model.close()
            raise

    def _load_adapter(self, llama_cpp: Any, path: Path) -> Any:
        if not path.is_file():
            raise InferenceError(f"LoRA adapter not found: {path}")
        handle = llama_cpp.llama_adapter_lora_init(self.model.model, str(path).encode())
        # A failed load returns a NULL pointer object, which is falsy but not None: using it
        # would crash the process at the first decode instead of failing here.
        if not handle:
            raise InferenceError(
                f"failed to load LoRA adapter {path} (wrong format or base model?)"
            )
        return handle

    def new_context(self, cparams: Any) -> Any:
        """A llama context on these weights, with the adapters applied."""
        llama_cpp = llama()
        try:
            ctx = internals().LlamaContext(model=self.model, params=cparams, verbose=True)
        except ValueError as err:
            raise InferenceError(f"failed to create a context for {self.path}: {err}") from None
        if self.adapters:
            n = len(self.adapters)
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*self.adapters)
            scales = (ctypes.c_float * n)(*([1.0] * n))
            if llama_cpp.llama_set_adapters_lora(ctx.ctx, handles, n, scales) != 0:
                ctx.close()
                raise InferenceError(f"failed to apply LoRA adapters to {self.path}")
        return ctx

    def close(self) -> None:
        self.model.close()  # also frees the adapters

    # -- the vocabulary ----------------------------------------------------------------------

    def tokenize(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[int]:
        """Token ids of ``text`` (BOS added when the model wants it and ``add_special``)."""
        llama_cpp = llama()
        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, size, add_special, parse_special
            )
            if n >= 0:
                return list(buf[:n])
            size = -n
        raise InferenceError(f"failed to tokenize {len(data)} bytes of text")

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        if not 0 <= token < self.n_vocab:  # llama.cpp would abort the process
            raise RequestError(f"{token} is not a token of this model (0 to {self.n_vocab - 1})")
        llama_cpp = llama()
        size = 64
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n
        raise InferenceError(f"failed to detokenize token {token}")

    def detokenize(self, tokens: Seq[int], *, special: bool = False) -> str:
        """The text of ``tokens`` (control tokens rendered only with ``special``)."""
        data = b"".join(self.token_bytes(t, special=special) for t in tokens)
        return data.decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama().llama_vocab_is_eog(self.vocab, token))

    # -- metadata ----------------------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value of the model as text (``None`` when absent)."""
        llama_cpp = llama()
        size = 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.model.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1
        return None

    def pooling_type(self) -> int:
        arch = self.metadata("general.architecture") or ""
        value = self.metadata(f"{arch}.pooling_type")
        try:
            return int(value) if value is not None else POOLING_UNSPECIFIED
        except ValueError:
            return POOLING_UNSPECIFIED
