"""Structured output that costs little: ``format`` ("json" or a JSON Schema) as a GBNF
grammar, enforced by checking the token the normal sampler chose and only falling back to
filtering the whole vocabulary through the grammar when that token is not allowed.

Applying a grammar to every candidate at every step (llama-cpp-python's stock path) is what
makes constrained decoding slow: for a 150k-token vocabulary it dominates each step. Most
sampled tokens are already valid, so one single-token check usually suffices.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from modelkit.errors import InferenceError, RequestError

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _llama() -> Any:
    import llama_cpp

    return llama_cpp


@functools.cache
def _llama_grammar() -> Any:
    """llama-cpp-python's ``llama_grammar`` module (JSON Schema → GBNF, pure Python), loaded
    by path: importing it through the ``llama_cpp`` package would load the native library
    into a process that only checks requests (the server; models run in runners)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise InferenceError("llama-cpp-python is not installed (pip install 'modelkit[runtime]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "llama_grammar.py"
    loaded = importlib.util.spec_from_file_location("modelkit_llama_grammar", path)
    if loaded is None or loaded.loader is None:
        raise InferenceError(f"cannot read {path}")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def gbnf_for_format(fmt: Any) -> str | None:
    """The grammar for a request's ``format``: None, ``"json"`` or a JSON Schema object."""
    if fmt in (None, "", "null"):
        return None
    llama_grammar = _llama_grammar()

    if fmt == "json":
        return str(llama_grammar.JSON_GBNF)
    if isinstance(fmt, dict):
        try:
            return str(llama_grammar.json_schema_to_gbnf(json.dumps(fmt)))
        except Exception as err:  # the converter raises plain exceptions on bad schemas
            raise RequestError(f"invalid JSON schema in format: {err}") from None
    raise RequestError(
        f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema object'
    )


class TokenArray:
    """A reusable ``llama_token_data_array`` over the whole vocabulary (numpy-backed)."""

    def __init__(self, n_vocab: int) -> None:
        llama_cpp = _llama()
        self.n_vocab = n_vocab
        self.data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self.data["id"] = np.arange(n_vocab, dtype=np.int32)
        self.one = np.zeros(1, dtype=_TOKEN_DATA)
        pointer = ctypes.POINTER(llama_cpp.llama_token_data)
        self._full = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(pointer), size=n_vocab, selected=-1, sorted=False
        )
        self._single = llama_cpp.llama_token_data_array(
            data=self.one.ctypes.data_as(pointer), size=1, selected=-1, sorted=False
        )

    def load_logits(self, logits_ptr: Any) -> Any:
        """Fill from the context's logits row; returns the array, ready to be applied."""
        logits = np.ctypeslib.as_array(logits_ptr, shape=(self.n_vocab,))
        self.data["id"] = np.arange(self.n_vocab, dtype=np.int32)
        self.data["logit"] = logits
        self.data["p"] = 0.0
        self._full.size = self.n_vocab
        self._full.selected = -1
        self._full.sorted = False
        return self._full

    def single(self, token: int, logit: float) -> Any:
        self.one["id"] = token
        self.one["logit"] = logit
        self.one["p"] = 0.0
        self._single.size = 1
        self._single.selected = -1
        self._single.sorted = False
        return self._single

    def selected_token(self, array: Any) -> int:
        if array.selected < 0:
            raise InferenceError("the sampler selected no token")
        return int(array.data[array.selected].id)


class GrammarGuard:
    """A grammar sampler used as a check first and as a filter only when needed."""

    def __init__(self, vocab: Any, gbnf: str, n_vocab: int, *, compiled: Any = None) -> None:
        llama_cpp = _llama()
        self._llama_cpp = llama_cpp  # kept: close() may run at interpreter exit
        self.vocab, self.gbnf, self.n_vocab = vocab, gbnf, n_vocab
        if compiled is not None:  # a copy of a compiled grammar, in its start state
            self.sampler = llama_cpp.llama_sampler_clone(compiled)
        else:
            self.sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not self.sampler:
            raise RequestError("the grammar could not be compiled by llama.cpp")
        self.tokens = TokenArray(n_vocab)
        self.fast_hits = 0
        self.slow_paths = 0

    def copy(self) -> GrammarGuard:
        """A guard of the same grammar from its start, without parsing it again (for a cache
        of compiled grammars; only an unused guard's state is the start state)."""
        return type(self)(self.vocab, self.gbnf, self.n_vocab, compiled=self.sampler)

    def allows(self, token: int) -> bool:
        llama_cpp = _llama()
        array = self.tokens.single(token, 0.0)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        return bool(np.isfinite(self.tokens.one["logit"][0]))

    def sample(self, chain: Any, ctx: Any, idx: int) -> int:
        """Sample with ``chain`` (a llama_sampler pointer) under the grammar; not accepted."""
        llama_cpp = _llama()
        array = self.tokens.load_logits(llama_cpp.llama_get_logits_ith(ctx, idx))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        token = self.tokens.selected_token(array)
        if self.allows(token):
            self.fast_hits += 1
            return token
        self.slow_paths += 1
        array = self.tokens.load_logits(llama_cpp.llama_get_logits_ith(ctx, idx))
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        return self.tokens.selected_token(array)

    def accept(self, token: int) -> None:
        _llama().llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if getattr(self, "sampler", None):
            self._llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None

    def __del__(self) -> None:
        self.close()
