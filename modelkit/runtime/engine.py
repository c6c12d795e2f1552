"""A model loaded into llama.cpp (through llama-cpp-python's low-level API), and generation.

:class:`LoadedModel` owns one ``llama_model``, one generation context with ``n_seq_max``
sequence slots (each request decodes in its own slot, with its own :class:`Sequence`:
sampler chain, stop matcher, UTF-8 decoder, counters), its LoRA adapters, and, created on
first use, an embedding context on the same weights.

Each slot remembers the tokens left in its KV cache; a request reuses the longest common
prefix (Ollama's prompt cache: the next turn of a chat only evaluates the new tokens), and
picks the free slot that shares most with its prompt. ``cache_prompt=False`` turns it off.

Threading: a model may be used from several worker threads. Every call into a llama.cpp
context (a decode and its sampling, or one embedding) runs under that context's lock.
Generation steps of different slots are batched: a request's next token joins a queue, and
whichever request takes the lock decodes every queued token in one ``llama_decode`` and
samples each slot at its own position, so parallel requests share each pass over the weights
(continuous batching; a prompt is decoded on its own). Tokenizing only reads the vocabulary
and runs without the lock. (llama-cpp-python must be built with ``GGML_OPENMP=OFF`` to run at
full speed from several threads; see /work/shared/README.md.)
"""

from __future__ import annotations

import codecs
import ctypes
import importlib
import logging
import math
import threading
import time
from collections.abc import Generator, Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from modelkit.cpu import apply_kernels
from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.constrain import GrammarGuard
from modelkit.runtime.logprobs import Logprob, PendingLogprobs, token_logprobs
from modelkit.runtime.options import (
    LoadParams,
    Options,
    RuntimeDefaults,
    SamplingParams,
    load_params,
    resolve_options,
    sampling_params,
)
from modelkit.runtime.stop import StopMatcher

if TYPE_CHECKING:  # the store is only needed when loading from it
    from modelkit.store import ModelView, Store

__all__ = [
    "Chunk",
    "Embeddings",
    "GenerationStats",
    "LoadedModel",
    "Sequence",
    "built_with_openmp",
]

log = logging.getLogger(__name__)

_GATHER_SECONDS: Final = 0.005
"""The longest a batch of generation steps waits for the other generating sequences."""
_POOLING_NONE: Final = 0
_POOLING_LAST: Final = 3
_POOLING_UNSPECIFIED: Final = -1

_backend_lock = threading.Lock()
_backend_ready = False


def _llama() -> Any:
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


def _internals() -> Any:
    """``llama_cpp._internals``: the wrappers of llama_model, llama_context, batches and
    sampler chains (untyped, hence ``Any``)."""
    _llama()
    return importlib.import_module("llama_cpp._internals")


@dataclass
class GenerationStats:
    """The final numbers of one generation, as Ollama reports them (durations in ns,
    measured with ``time.perf_counter_ns``).

    ``eval_count`` counts every sampled token, the end-of-generation token included (it is
    decoded work); ``context`` is the prompt's tokens followed by the generated ones, without
    the end-of-generation token. ``load_duration`` is how long this model took to load; a
    server that reuses a loaded model reports its own (near zero) wait instead.
    ``prompt_eval_count`` is the whole prompt, as in Ollama, even when ``cached_count`` of its
    first tokens were reused from the previous request's KV cache.
    """

    done_reason: str  # "stop" | "length"
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    load_duration: int
    total_duration: int
    context: list[int] = field(default_factory=list)
    cached_count: int = 0


@dataclass
class Chunk:
    """A piece of generated text; the last one has ``done`` set and carries ``stats``."""

    text: str
    done: bool = False
    stats: GenerationStats | None = None
    logprobs: list[Logprob] = field(default_factory=list)
    """Of the tokens whose text this chunk releases (when the request asked for them)."""

    @property
    def done_reason(self) -> str | None:
        return self.stats.done_reason if self.stats else None


@dataclass
class Embeddings:
    """Normalized embedding vectors and the number of tokens evaluated to make them."""

    vectors: list[list[float]]
    prompt_eval_count: int


class Sequence:
    """One request's decoding state in one slot (``seq_id``) of a shared llama context.

    Holds everything that belongs to the request, so several sequences can live in the same
    context: the tokens in the slot's KV cache, the sampler chain (penalty history, RNG), the
    stop matcher, the incremental UTF-8 decoder and the counters.
    """

    def __init__(
        self,
        seq_id: int,
        prompt: list[int],
        params: SamplingParams,
        *,
        n_ctx: int,
        n_vocab: int,
        guard: GrammarGuard | None = None,
        top_logprobs: int | None = None,
        shift: bool = True,
    ) -> None:
        self.seq_id = seq_id
        self.params = params
        self.n_ctx = n_ctx
        self.n_vocab = n_vocab
        self.prompt = prompt
        self.generated: list[int] = []
        self.matcher = StopMatcher(params.stop)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.prompt_eval_duration = 0
        self.eval_duration = 0
        self.done_reason: str | None = None
        self.n_cached = 0
        """Prompt tokens reused from the slot's KV cache instead of being evaluated."""
        self.sampler: Any = _internals().LlamaSampler()
        self.guard = guard
        """The ``format`` grammar, checked against each sampled token (None: unconstrained)."""
        self.shift = shift
        """Whether a full context drops older tokens to go on (Ollama's context shift)."""
        self.discarded = 0
        """Tokens dropped from the KV cache by context shifts."""
        self.top_logprobs = top_logprobs
        """None: no log probabilities; else how many alternatives to report with each."""
        self.logits: np.ndarray[Any, np.dtype[np.float32]] | None = None
        """The logits the last token was sampled from (only kept for log probabilities)."""
        self._build_sampler()

    def _build_sampler(self) -> None:
        p, s = self.params, self.sampler
        last_n = self.n_ctx if p.repeat_last_n < 0 else p.repeat_last_n
        if last_n != 0 and (
            p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0
        ):
            s.add_penalties(
                self.n_vocab, last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
            )
        if p.temperature <= 0:
            s.add_greedy()
            return
        if p.top_k > 0:
            s.add_top_k(p.top_k)
        if 0 < p.typical_p < 1:
            s.add_typical(p.typical_p, 1)
        if 0 < p.top_p < 1:
            s.add_top_p(p.top_p, 1)
        if p.min_p > 0:
            s.add_min_p(p.min_p, 1)
        s.add_temp(p.temperature)
        s.add_dist(p.seed)

    @property
    def n_past(self) -> int:
        """Tokens of this sequence in the KV cache once the last sampled one is decoded."""
        return len(self.prompt) + len(self.generated) - self.discarded

    def decode_text(self, piece: bytes, *, final: bool = False) -> str:
        return self._utf8.decode(piece, final=final)

    def close(self) -> None:
        self.sampler.close()
        if self.guard is not None:
            self.guard.close()


def _accept_guarded(seq: Sequence, token: int) -> None:
    """A grammar-guarded sample is not accepted by the sampler chain itself: accept it into
    the chain and the grammar (an unguarded one was accepted while sampling)."""
    if seq.guard is not None:
        seq.sampler.accept(token)
        seq.guard.accept(token)


@dataclass
class _QueuedStep:
    """A generated token waiting to be decoded in its slot, and then the next token."""

    seq: Sequence
    token: int
    pos: int
    result: int = -1
    error: BaseException | None = None
    done: bool = False


class LoadedModel:
    """A GGUF model (plus LoRA adapters) loaded for generation and embeddings.

    Build one from files (``LoadedModel(path, adapters=[...], load=LoadParams)``) or from the
    store (:meth:`from_store`). ``close()`` (or a ``with`` block) frees it.

    ``load`` fixes the context (default: the model params' load-time options);
    ``model_params`` are the model's PARAMETERs, under request options in :meth:`resolve`;
    ``cache_prompt`` reuses each slot's KV cache across requests. A missing or broken
    weights file or LoRA adapter raises :class:`InferenceError` here, never later.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        adapters: Seq[str | Path] = (),
        load: LoadParams | None = None,
        model_params: dict[str, Any] | None = None,
        cache_prompt: bool = True,
        verbose: bool = False,
    ) -> None:
        started = time.perf_counter_ns()
        llama_cpp = _llama()
        internals = _internals()

        if not verbose:
            # llama-cpp-python maps ggml's log levels with an older numbering (ggml's WARN
            # arrives as ERROR, its ERROR as DEBUG), so ERROR would let warnings through.
            logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        self.model_path = Path(model_path)
        self.adapter_paths = [Path(a) for a in adapters]
        self.model_params: dict[str, Any] = dict(model_params or {})
        self.load_params = load or load_params(resolve_options(self.model_params, None))
        lp = self.load_params
        if not self.model_path.is_file():
            raise InferenceError(f"model weights not found: {self.model_path}")

        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = lp.n_gpu_layers
        mparams.main_gpu = lp.main_gpu
        mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if lp.use_mmap else 0
        self.kernels = apply_kernels(
            llama_cpp, mparams, allow_amx=lp.allow_amx, safe=lp.safe_kernels
        )
        try:
            # verbose=True: do not let the wrapper redirect file descriptors (not
            # thread-safe); llama.cpp's log output is filtered by the logger level instead.
            self._model: Any = internals.LlamaModel(
                path_model=str(self.model_path), params=mparams, verbose=True
            )
        except (ValueError, RuntimeError) as err:
            raise InferenceError(f"failed to load model {self.model_path}: {err}") from None
        self._closed = False
        try:
            self._vocab = self._model.vocab
            self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self._model.model)
            self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
            self.n_embd: int = llama_cpp.llama_model_n_embd(self._model.model)
            n_ctx = lp.n_ctx if self.n_ctx_train <= 0 else min(lp.n_ctx, self.n_ctx_train)
            self.n_ctx: int = max(n_ctx, 4)
            """Context positions available to one sequence (request)."""
            self.n_seq_max = max(lp.n_seq_max, 1)
            # A batch must hold one generation step of every slot (llama.cpp aborts the
            # process when it has more sequences than batch outputs).
            self.n_batch = max(min(lp.n_batch, self.n_ctx), self.n_seq_max, 1)
            self._adapters: list[Any] = [self._load_adapter(llama_cpp, p) for p in adapters]
            self._ctx: Any = internals.LlamaContext(
                model=self._model,
                params=self._context_params(llama_cpp, embeddings=False),
                verbose=True,
            )
            self._apply_adapters(llama_cpp, self._ctx)
            self._batch: Any = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1)
        except ValueError as err:
            self._model.close()
            raise InferenceError(
                f"failed to create a context for {self.model_path}: {err}"
            ) from None
        except BaseException:
            self._model.close()
            raise
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._queue_lock)
        self._queued: list[_QueuedStep] = []
        self._generating = 0
        """Sequences in their generation loop: how many steps a batch can expect."""
        self.batch_steps = True
        """Decode the generation steps of parallel requests together (False: one by one)."""
        self.cache_prompt = cache_prompt
        self._slot_cond = threading.Condition()
        self._free_slots = list(range(self.n_seq_max))
        # The tokens each slot holds in the KV cache (for prompt-prefix reuse).
        self._slot_tokens: list[list[int]] = [[] for _ in range(self.n_seq_max)]
        self._embed_lock = threading.Lock()
        self._embed_ctx: Any = None
        self._embed_batch: Any = None
        self.load_duration = time.perf_counter_ns() - started

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_store(
        cls,
        store: Any,
        name: Any,
        *,
        options: dict[str, Any] | None = None,
        settings: RuntimeDefaults | None = None,
        verbose: bool = False,
    ) -> LoadedModel:
        """Load a model of the store by name (a ``ModelName`` or a string to parse).

        ``options`` are the request's options (their load-time part decides the context);
        the model's own PARAMETERs come first. Raises ModelNotFoundError, OptionTypeError or
        :class:`InferenceError`.
        """
        from modelkit.names import ModelName
        from modelkit.store.view import view_model

        model_name = name if isinstance(name, ModelName) else ModelName.parse(str(name))
        view = view_model(store, model_name)
        opts = resolve_options(view.parameters, options, settings)
        return cls.from_view(store, view, load_params(opts, settings), verbose=verbose)

    @classmethod
    def from_view(
        cls, store: Store, view: ModelView, load: LoadParams, *, verbose: bool = False
    ) -> LoadedModel:
        """Load a stored model already read back (a ``ModelView``) with ``load``."""
        if view.model is None:
            raise InferenceError(f"model {view.name.display} has no model weights layer")
        return cls(
            store.blob_path(view.model.digest),
            adapters=[store.blob_path(a.digest) for a in view.adapters],
            load=load,
            model_params=view.parameters,
            verbose=verbose,
        )

    def _context_params(self, llama_cpp: Any, *, embeddings: bool, pooling: int = -1) -> Any:
        lp = self.load_params
        cparams = llama_cpp.llama_context_default_params()
        if embeddings:
            cparams.n_ctx = self.n_ctx
            cparams.n_batch = cparams.n_ubatch = self.n_ctx  # a text must fit one ubatch
            cparams.n_seq_max = 1
            cparams.embeddings = True
            cparams.pooling_type = pooling
        else:
            cparams.n_ctx = self.n_ctx * self.n_seq_max
            cparams.n_batch = cparams.n_ubatch = self.n_batch
            cparams.n_seq_max = self.n_seq_max
        cparams.n_threads = cparams.n_threads_batch = lp.n_threads
        cparams.flash_attn_type = lp.flash_attn
        cparams.type_k = lp.type_k
        cparams.type_v = lp.type_v
        return cparams

    def _load_adapter(self, llama_cpp: Any, path: str | Path) -> Any:
        if not Path(path).is_file():
            raise InferenceError(f"LoRA adapter not found: {path}")
        handle = llama_cpp.llama_adapter_lora_init(self._model.model, str(path).encode())
        # A failed load returns a NULL pointer object, which is falsy but not None: using it
        # would crash the process at the first decode instead of failing here.
        if not handle:
            raise InferenceError(
                f"failed to load LoRA adapter {path} (wrong format or base model?)"
            )
        return handle

    def _apply_adapters(self, llama_cpp: Any, ctx: Any) -> None:
        if not self._adapters:
            return
        n = len(self._adapters)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*self._adapters)
        scales = (ctypes.c_float * n)(*([1.0] * n))
        if llama_cpp.llama_set_adapters_lora(ctx.ctx, handles, n, scales) != 0:
            raise InferenceError(f"failed to apply LoRA adapters to {self.model_path}")

    @property
    def adapters_loaded(self) -> int:
        """How many LoRA adapters are loaded (each with a checked, non-null handle)."""
        return len(self._adapters)

    def close(self) -> None:
        """Free the contexts and the weights (idempotent; the object is unusable after)."""
        if self._closed:
            return
        self._closed = True
        with self._lock, self._embed_lock:
            for obj in (self._embed_batch, self._embed_ctx, self._batch, self._ctx):
                if obj is not None:
                    obj.close()
            self._model.close()  # also frees the adapters

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise InferenceError("the model has been unloaded")

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[int]:
        """Token ids of ``text`` (BOS added when the model wants it and ``add_special``)."""
        self._check_open()
        llama_cpp = _llama()
        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, size, add_special, parse_special
            )
            if n >= 0:
                return list(buf[:n])
            size = -n
        raise InferenceError(f"failed to tokenize {len(data)} bytes of text")

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        llama_cpp = _llama()
        size = 64
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n
        raise InferenceError(f"failed to detokenize token {token}")

    def detokenize(self, tokens: Seq[int], *, special: bool = False) -> str:
        """The text of ``tokens`` (control tokens rendered only with ``special``)."""
        self._check_open()
        data = b"".join(self.token_bytes(t, special=special) for t in tokens)
        return data.decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(_llama().llama_vocab_is_eog(self._vocab, token))

    # -- generation --------------------------------------------------------------------------

    def resolve(self, request_options: dict[str, Any] | None = None) -> Options:
        """This model's PARAMETERs overlaid with ``request_options`` (Ollama precedence)."""
        return resolve_options(self.model_params, request_options)

    def generate(
        self,
        prompt: str,
        options: Options | None = None,
        *,
        stream: bool = True,
        truncate: bool = True,
        grammar: str | None = None,
        top_logprobs: int | None = None,
        shift: bool = True,
    ) -> Generator[Chunk, None, None]:
        """Generate a completion of ``prompt`` (already rendered by a template).

        ``grammar`` (GBNF, see :func:`~modelkit.runtime.constrain.gbnf_for_format`)
        constrains the output, e.g. to JSON matching a schema. ``top_logprobs`` (not None)
        adds each token's log probability and that many alternatives to the chunks. When
        the context fills up, ``shift`` drops the older half of the tokens after the first
        ``num_keep`` and goes on (Ollama's context shift); without it generation ends there
        (``length``). An unlimited ``num_predict`` (-1) then stops at ten contexts' worth.

        The returned generator yields text deltas (``stream=True``) or one chunk with all
        the text, then/with the final chunk (``done=True``, ``stats``). Stop strings never
        appear in the output. A prompt longer than the context keeps its first ``num_keep``
        and its last tokens (``truncate=True``) or is refused.

        Request errors (empty prompt, prompt too long, unloaded model) raise
        :class:`InferenceError` here, before anything is generated. The generator takes a
        sequence slot when first advanced (waiting for one if all ``n_seq_max`` are busy)
        and gives it back when it ends or is closed early.
        """
        started = time.perf_counter_ns()
        self._check_open()
        opts = options if options is not None else self.resolve()
        params = sampling_params(opts)
        tokens = self._fit_prompt(self.tokenize(prompt), params.num_keep, truncate=truncate)
        # Compile the grammar now so that a bad one fails before anything is streamed.
        guard = GrammarGuard(self._vocab, grammar, self.n_vocab) if grammar else None
        return self._generate(
            tokens,
            params,
            started,
            stream=stream,
            guard=guard,
            top_logprobs=top_logprobs,
            shift=shift,
        )

    def _generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        started: int,
        *,
        stream: bool,
        guard: GrammarGuard | None = None,
        top_logprobs: int | None = None,
        shift: bool = True,
    ) -> Generator[Chunk, None, None]:
        seq_id = self._acquire_slot(tokens)
        seq: Sequence | None = None
        keep: list[int] = []
        try:
            seq = Sequence(
                seq_id,
                tokens,
                params,
                n_ctx=self.n_ctx,
                n_vocab=self.n_vocab,
                guard=guard,
                top_logprobs=top_logprobs,
                shift=shift,
            )
            seq.n_cached = self._reuse_prefix(seq_id, tokens)
            yield from self._run(seq, started, stream=stream)
            # After a context shift the slot no longer holds a prefix of the tokens.
            if self.cache_prompt and not seq.discarded:
                # Everything but the last sampled token was decoded into the slot.
                keep = seq.prompt + seq.generated[:-1]
        finally:
            if seq is not None:
                seq.close()
            if not keep:
                with self._lock:
                    if not self._closed:
                        _llama().llama_memory_seq_rm(self._ctx.memory, seq_id, -1, -1)
            self._release_slot(seq_id, keep)

    def _acquire_slot(self, tokens: list[int]) -> int:
        """A free sequence slot, preferring the one whose cache shares most of ``tokens``."""
        with self._slot_cond:
            while not self._free_slots:
                self._slot_cond.wait()
            best = max(
                self._free_slots,
                key=lambda i: _common_prefix(self._slot_tokens[i], tokens),
            )
            self._free_slots.remove(best)
            return best

    def _release_slot(self, seq_id: int, cached: list[int]) -> None:
        with self._slot_cond:
            self._slot_tokens[seq_id] = cached
            self._free_slots.append(seq_id)
            self._slot_cond.notify()

    def _reuse_prefix(self, seq_id: int, tokens: list[int]) -> int:
        """Keep the part of the slot's KV cache that ``tokens`` starts with; its length.

        At least the last prompt token is always decoded again (its logits are needed).
        """
        llama_cpp = _llama()
        common = 0
        if self.cache_prompt:
            common = min(_common_prefix(self._slot_tokens[seq_id], tokens), len(tokens) - 1)
        with self._lock:
            self._check_open()
            if not llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq_id, common, -1):
                llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq_id, -1, -1)
                common = 0
        self._slot_tokens[seq_id] = []
        return common

    def _fit_prompt(self, tokens: list[int], num_keep: int, *, truncate: bool) -> list[int]:
        if not tokens:
            raise RequestError("the prompt is empty (no tokens)")
        if len(tokens) <= self.n_ctx:
            return tokens
        if not truncate:
            raise RequestError("the input length exceeds the context length")
        keep = min(max(num_keep, 0), self.n_ctx - 1)
        discard = len(tokens) - self.n_ctx
        log.warning(
            "truncating input prompt: limit=%d prompt=%d keep=%d", self.n_ctx, len(tokens), keep
        )
        return tokens[:keep] + tokens[keep + discard :]

    def _next_token(self, seq: Sequence, token: int) -> int:
        """Decode a generated token and sample the next one, in one batch with the steps
        other slots have queued meanwhile."""
        if not self.batch_steps:
            return self._step(seq, [token], seq.n_past - 1)
        step = _QueuedStep(seq, token, seq.n_past - 1)
        with self._queue_changed:
            self._queued.append(step)
            self._queue_changed.notify_all()
        while not step.done:
            with self._lock:
                # Another request may have decoded this step while we waited for the lock.
                if not step.done:
                    self._decode_steps(self._gather())
        if step.error is not None:
            raise step.error
        _accept_guarded(seq, step.result)
        return step.result

    def _gather(self) -> list[_QueuedStep]:
        """The queued steps, after waiting briefly for every generating sequence to queue
        its own: sequences finish their previous step at slightly different times, and a
        batch that waits for them all decodes once instead of several times."""
        with self._queue_changed:
            self._queue_changed.wait_for(
                lambda: len(self._queued) >= min(self._generating, self.n_batch),
                timeout=_GATHER_SECONDS,
            )
            steps, self._queued = self._queued[: self.n_batch], self._queued[self.n_batch :]
        return steps

    def _generation(self, delta: int) -> None:
        with self._queue_changed:
            self._generating += delta
            self._queue_changed.notify_all()

    def _decode_steps(self, steps: list[_QueuedStep]) -> None:
        """One ``llama_decode`` for ``steps`` (one token each, in different slots), then each
        slot samples at its own position. Runs under the context lock."""
        # In slot order: llama.cpp splits a batch whose sequences come out of order into
        # several micro-batches, and the decode of 4 steps then costs twice as much (110 ms
        # against 56 ms for Qwen 0.5B on 2 cores, benchmarks/bench_parallel.py).
        steps = sorted(steps, key=lambda step: step.seq.seq_id)
        try:
            self._check_open()
            self._decode([(s.token, s.pos, s.seq.seq_id, True) for s in steps])
        except BaseException as err:  # the decode failed: every step of the batch did
            for step in steps:
                step.error, step.done = err, True
            return
        for i, step in enumerate(steps):
            try:
                step.result = self._sample(step.seq, i)
            except BaseException as err:  # one request's sampling fails that request only
                step.error = err
            finally:
                step.done = True

    def _sample(self, seq: Sequence, idx: int) -> int:
        """Sample ``seq``'s next token from the logits at batch position ``idx`` (under the
        lock). Without a grammar the chain also accepts it; with one the caller does."""
        llama_cpp = _llama()
        if seq.top_logprobs is not None:
            # Copied under the lock: the next decode in this context overwrites them.
            raw = llama_cpp.llama_get_logits_ith(self._ctx.ctx, idx)
            seq.logits = np.ctypeslib.as_array(raw, shape=(self.n_vocab,)).copy()
        if seq.guard is None:
            token: int = seq.sampler.sample(self._ctx, idx)
            return token
        guarded: int = seq.guard.sample(seq.sampler.sampler, self._ctx.ctx, idx)
        return guarded

    def _step(self, seq: Sequence, tokens: list[int], pos: int) -> int:
        """Decode ``tokens`` at ``pos`` in ``seq``'s slot, then sample its next token."""
        with self._lock:
            self._check_open()
            for start in range(0, len(tokens), self.n_batch):
                part = tokens[start : start + self.n_batch]
                last = len(part) - 1
                self._decode(
                    [(tok, pos + start + i, seq.seq_id, i == last) for i, tok in enumerate(part)]
                )
            token = self._sample(seq, -1)
        _accept_guarded(seq, token)
        return token

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One ``llama_decode`` of (token, position, slot, wants logits) entries (under the
        lock; at most ``n_batch`` of them)."""
        batch = self._batch.batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits
        rc = _llama().llama_decode(self._ctx.ctx, batch)
        if rc != 0:
            raise InferenceError(f"llama_decode failed with code {rc}")

    def _shift_context(self, seq: Sequence) -> bool:
        """Make room in a full context: drop the older half of the tokens after the first
        ``num_keep`` and move the rest down (Ollama's ``ShiftCacheSlot``). False when the
        request or the model does not allow it, or there is nothing to drop."""
        if not seq.shift or seq.params.num_predict == -2:  # -2: fill the context, then stop
            return False
        llama_cpp = _llama()
        in_cache = seq.n_past - 1  # the last sampled token is not decoded yet
        keep = min(max(seq.params.num_keep, 0), self.n_ctx - 1)
        discard = (in_cache - keep) // 2
        if discard <= 0:
            return False
        with self._lock:
            self._check_open()
            memory = self._ctx.memory
            if not llama_cpp.llama_memory_can_shift(memory):
                return False
            llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, keep, keep + discard)
            llama_cpp.llama_memory_seq_add(memory, seq.seq_id, keep + discard, -1, -discard)
        seq.discarded += discard
        log.debug("context shift: kept %d, dropped %d of %d tokens", keep, discard, in_cache)
        return True

    def _run(self, seq: Sequence, started: int, *, stream: bool) -> Iterator[Chunk]:
        p = seq.params
        # Prompt tokens feed the repetition penalties, as in llama.cpp's server.
        history = seq.prompt if p.repeat_last_n < 0 else seq.prompt[-p.repeat_last_n :]
        if p.repeat_last_n != 0:
            for tok in history:
                seq.sampler.accept(tok)
        t0 = time.perf_counter_ns()
        token = self._step(seq, seq.prompt[seq.n_cached :], seq.n_cached)
        seq.prompt_eval_duration = time.perf_counter_ns() - t0
        pieces: list[str] = []
        # Unlimited (any num_predict below 1 but -2, "fill the context") with a context
        # shift would never end on a model that never stops: Ollama's cap of 10 contexts.
        budget = p.num_predict if p.num_predict > 0 else 0
        if p.num_predict != -2 and budget == 0 and seq.shift:
            budget = 10 * self.n_ctx
        pending = PendingLogprobs()
        released: list[Logprob] = []
        t_eval = time.perf_counter_ns()
        # Batches of steps wait for the sequences counted here; one paused at a yield (its
        # client reading slowly, or not at all) is not counted meanwhile.
        self._generation(+1)
        counted = True
        try:
            while True:
                seq.generated.append(token)
                if self.is_eog(token):
                    seq.done_reason = "stop"
                    break
                text = seq.decode_text(self.token_bytes(token))
                if seq.logits is not None and seq.top_logprobs is not None:
                    pending.add(
                        token_logprobs(seq.logits, token, seq.top_logprobs, self.token_bytes),
                        len(text),
                    )
                out = seq.matcher.feed(text) if text else ""
                if out:
                    released += pending.release(len(out))
                    if stream:
                        seq.eval_duration += time.perf_counter_ns() - t_eval
                        self._generation(-1)
                        counted = False
                        yield Chunk(out, logprobs=released)
                        self._generation(+1)
                        counted = True
                        released = []
                        t_eval = time.perf_counter_ns()
                    else:
                        pieces.append(out)
                if seq.matcher.stopped:
                    seq.done_reason = "stop"
                    break
                if budget > 0 and len(seq.generated) >= budget:
                    seq.done_reason = "length"
                    break
                if seq.n_past >= self.n_ctx and not self._shift_context(seq):
                    seq.done_reason = "length"  # the context is full
                    break
                token = self._next_token(seq, token)
        finally:
            if counted:
                self._generation(-1)
        seq.eval_duration += time.perf_counter_ns() - t_eval
        rest = seq.matcher.feed(seq.decode_text(b"", final=True)) + seq.matcher.flush()
        output = [t for t in seq.generated if not self.is_eog(t)]
        stats = GenerationStats(
            done_reason=seq.done_reason or "stop",
            prompt_eval_count=len(seq.prompt),
            cached_count=seq.n_cached,
            prompt_eval_duration=max(seq.prompt_eval_duration, 1),
            eval_count=len(seq.generated),
            eval_duration=max(seq.eval_duration, 1),
            load_duration=self.load_duration,
            total_duration=time.perf_counter_ns() - started,
            context=seq.prompt + output,
        )
        released += pending.release(len(rest))
        final_text = rest if stream else "".join(pieces) + rest
        yield Chunk(final_text, done=True, stats=stats, logprobs=released)

    # -- embeddings --------------------------------------------------------------------------

    def _embedding_context(self) -> Any:
        """The embedding context (created on first use, on the same weights)."""
        if self._embed_ctx is None:
            llama_cpp = _llama()
            internals = _internals()

            # A generative model has no pooling: one vector per text from its last token, as
            # Ollama's runner does.
            pooling = self._pooling_type()
            if pooling in (_POOLING_NONE, _POOLING_UNSPECIFIED):
                pooling = _POOLING_LAST
            try:
                ctx = internals.LlamaContext(
                    model=self._model,
                    params=self._context_params(llama_cpp, embeddings=True, pooling=pooling),
                    verbose=True,
                )
            except ValueError as err:
                raise InferenceError(f"failed to create an embedding context: {err}") from None
            self._apply_adapters(llama_cpp, ctx)
            self._embed_batch = internals.LlamaBatch(n_tokens=self.n_ctx, embd=0, n_seq_max=1)
            self._embed_ctx = ctx
        return self._embed_ctx

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value of the model as text (``None`` when absent)."""
        llama_cpp = _llama()
        size = 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self._model.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1
        return None

    def _pooling_type(self) -> int:
        arch = self.metadata("general.architecture") or ""
        value = self.metadata(f"{arch}.pooling_type")
        try:
            return int(value) if value is not None else _POOLING_UNSPECIFIED
        except ValueError:
            return _POOLING_UNSPECIFIED

    def embed(
        self, texts: Seq[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> list[list[float]]:
        """One L2-normalized vector per text (Ollama's /api/embed)."""
        return self.embed_with_stats(texts, truncate=truncate, dimensions=dimensions).vectors

    def embed_with_stats(
        self, texts: Seq[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> Embeddings:
        """:meth:`embed` plus the number of tokens evaluated (``prompt_eval_count``).

        A text longer than the context is cut to fit (``truncate``) or raises
        InferenceError; ``dimensions`` below the model's size truncates each vector, which is
        then normalized again. NaN/Inf in a result raises InferenceError.
        """
        self._check_open()
        vectors: list[list[float]] = []
        count = 0
        for text in texts:
            tokens = self.tokenize(text)
            if not tokens:
                raise RequestError("cannot embed an empty input")
            if len(tokens) > self.n_ctx:
                if not truncate:
                    raise RequestError("the input length exceeds the context length")
                tokens = tokens[: self.n_ctx]
            count += len(tokens)
            vec = self._embed_tokens(tokens)
            if dimensions is not None and 0 < dimensions < len(vec):
                vec = vec[:dimensions]
            vectors.append(_normalize(vec))
        return Embeddings(vectors=vectors, prompt_eval_count=count)

    def _embed_tokens(self, tokens: list[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
        llama_cpp = _llama()
        with self._embed_lock:
            self._check_open()
            ctx = self._embedding_context()
            llama_cpp.llama_memory_clear(ctx.memory, True)
            batch = self._embed_batch.batch
            batch.n_tokens = len(tokens)
            for i, tok in enumerate(tokens):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            rc = llama_cpp.llama_decode(ctx.ctx, batch)
            if rc != 0:
                raise InferenceError(f"llama_decode failed with code {rc}")
            ptr = llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)
            if not ptr:
                raise InferenceError("the model returned no pooled embedding")
            n = llama_cpp.llama_model_n_embd_out(self._model.model) or self.n_embd
            vec = np.ctypeslib.as_array(ptr, shape=(n,)).astype(np.float64)
            llama_cpp.llama_memory_clear(ctx.memory, True)
        return vec


def _common_prefix(a: Seq[int], b: Seq[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _normalize(vec: np.ndarray[Any, np.dtype[np.float64]]) -> list[float]:
    if not np.all(np.isfinite(vec)):
        raise InferenceError("the embedding contains NaN or Inf values")
    norm = math.sqrt(float(np.dot(vec, vec)))
    if norm > 0:
        vec = vec / norm
    return [float(x) for x in vec]
