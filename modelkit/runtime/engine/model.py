"""A model loaded for generation and embeddings: its weights, a generation context run by a
:class:`~.batcher.Batcher`, and an :class:`~.embeddings.Embedder` made on first use.

:class:`LoadedModel` checks a request (tokenizes and fits the prompt, compiles its grammar)
on the caller's thread, so a bad one fails before anything is queued; the batcher's thread
does all the decoding. :meth:`LoadedModel.submit` is the runner's way in (chunks go to a
callback); :meth:`LoadedModel.generate` wraps it as a generator for code that reads a stream.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Generator
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.constrain import GrammarGuard
from modelkit.runtime.engine.batcher import Batcher
from modelkit.runtime.engine.embeddings import Embedder
from modelkit.runtime.engine.generation import Emit, Generation, merged
from modelkit.runtime.engine.results import Chunk, Embeddings
from modelkit.runtime.engine.sampling import Sampler
from modelkit.runtime.engine.vision import ImagePiece, Images, Vision
from modelkit.runtime.engine.weights import Weights, llama
from modelkit.runtime.images import IMAGE_TAG
from modelkit.runtime.options import (
    LoadParams,
    Options,
    RuntimeDefaults,
    load_params,
    resolve_options,
    sampling_params,
)

if TYPE_CHECKING:  # the store is only needed when loading from it
    from modelkit.store import ModelView, Store

__all__ = ["LoadedModel"]

log = logging.getLogger(__name__)

GRAMMAR_CACHE = 32
"""Compiled grammars kept per model, the least recently used dropped first."""


class LoadedModel:
    """A GGUF model (plus LoRA adapters) loaded for generation and embeddings.

    Build one from files (``LoadedModel(path, adapters=[...], load=LoadParams)``) or from the
    store (:meth:`from_store`). ``close()`` (or a ``with`` block) frees it.

    ``load`` fixes the context (default: the model params' load-time options): ``n_seq_max``
    slots of ``n_ctx`` positions each; ``model_params`` are the model's PARAMETERs, under
    request options in :meth:`resolve`; ``cache_prompt`` lets a slot's next request reuse
    the prompt prefix its KV cache holds. A missing or broken weights file or LoRA adapter
    raises :class:`InferenceError` here, never later.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        adapters: Seq[str | Path] = (),
        projector: str | Path | None = None,
        load: LoadParams | None = None,
        model_params: dict[str, Any] | None = None,
        cache_prompt: bool = True,
        verbose: bool = False,
    ) -> None:
        started = time.perf_counter_ns()
        self.model_path = Path(model_path)
        self.adapter_paths = [Path(a) for a in adapters]
        self.model_params: dict[str, Any] = dict(model_params or {})
        self.load_params = load or load_params(resolve_options(self.model_params, None))
        lp = self.load_params
        self.weights = Weights(self.model_path, self.adapter_paths, lp, verbose=verbose)
        self.kernels = self.weights.kernels
        self.n_ctx_train = self.weights.n_ctx_train
        self.n_vocab = self.weights.n_vocab
        self.n_embd = self.weights.n_embd
        n_ctx = lp.n_ctx if self.n_ctx_train <= 0 else min(lp.n_ctx, self.n_ctx_train)
        self.n_ctx: int = max(n_ctx, 4)
        """Context positions available to one sequence (request)."""
        self.n_seq_max = max(lp.n_seq_max, 1)
        # A batch must hold one generation step of every slot (llama.cpp aborts the process
        # when it has more sequences than batch outputs).
        self.n_batch = max(min(lp.n_batch, self.n_ctx), self.n_seq_max, 1)
        self._closed = False
        self.vision: Vision | None = None
        try:
            if projector is not None:
                self.vision = Vision(Path(projector), self.weights, n_threads=lp.n_threads)
            self._ctx: Any = self.weights.new_context(self._generation_params())
            self.batcher = Batcher(
                self.weights,
                self._ctx,
                n_slots=self.n_seq_max,
                n_ctx=self.n_ctx,
                n_batch=self.n_batch,
                n_threads=lp.n_threads,
                vision=self.vision,
                cache_prompt=cache_prompt,
            )
        except BaseException:
            if self.vision is not None:
                self.vision.close()
            self.weights.close()
            raise
        self.embedder = Embedder(self.weights, self._embedding_params, self.n_ctx)
        self._grammars: dict[str, GrammarGuard] = {}
        self._grammars_lock = threading.Lock()
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
            projector=store.blob_path(view.projectors[0].digest) if view.projectors else None,
            load=load,
            model_params=view.parameters,
            verbose=verbose,
        )

    def _common_params(self) -> Any:
        lp = self.load_params
        cparams = llama().llama_context_default_params()
        cparams.n_threads = cparams.n_threads_batch = lp.n_threads
        cparams.flash_attn_type = lp.flash_attn
        cparams.type_k = lp.type_k
        cparams.type_v = lp.type_v
        return cparams

    def _generation_params(self) -> Any:
        cparams = self._common_params()
        cparams.n_ctx = self.n_ctx * self.n_seq_max
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = self.n_seq_max
        return cparams

    def _embedding_params(self, pooling: int) -> Any:
        cparams = self._common_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = cparams.n_ubatch = self.n_ctx  # a text must fit one ubatch
        cparams.n_seq_max = 1
        cparams.embeddings = True
        cparams.pooling_type = pooling
        return cparams

    @property
    def adapters_loaded(self) -> int:
        """How many LoRA adapters are loaded (each with a checked, non-null handle)."""
        return len(self.weights.adapters)

    @property
    def cache_prompt(self) -> bool:
        return self.batcher.slots.cache_prompt

    def close(self) -> None:
        """Fail what is in flight and free the contexts and the weights (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.batcher.stop()
        if self.vision is not None:
            self.vision.close()
        self.embedder.close()
        with self._grammars_lock:
            for compiled in self._grammars.values():
                compiled.close()
            self._grammars.clear()
        self._ctx.close()
        self.weights.close()

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
        return self.weights.tokenize(text, add_special=add_special, parse_special=parse_special)

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        return self.weights.token_bytes(token, special=special)

    def detokenize(self, tokens: Seq[int], *, special: bool = False) -> str:
        """The text of ``tokens`` (control tokens rendered only with ``special``)."""
        self._check_open()
        return self.weights.detokenize(tokens, special=special)

    def is_eog(self, token: int) -> bool:
        return self.weights.is_eog(token)

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value of the model as text (``None`` when absent)."""
        return self.weights.metadata(key)

    # -- generation --------------------------------------------------------------------------

    def resolve(self, request_options: dict[str, Any] | None = None) -> Options:
        """This model's PARAMETERs overlaid with ``request_options`` (Ollama precedence)."""
        return resolve_options(self.model_params, request_options)

    def prepare(
        self,
        prompt: str,
        options: Options | None,
        emit: Emit,
        *,
        truncate: bool = True,
        grammar: str | None = None,
        top_logprobs: int | None = None,
        shift: bool = True,
        images: Seq[str | bytes] = (),
    ) -> Generation:
        """A generation of ``prompt`` (already rendered by a template), checked and ready
        to :meth:`submit`.

        ``grammar`` (GBNF, see :func:`~modelkit.runtime.constrain.gbnf_for_format`)
        constrains the output, e.g. to JSON matching a schema. ``top_logprobs`` (not None)
        adds each token's log probability and that many alternatives to the chunks. When
        the context fills up, ``shift`` drops the older half of the tokens after the first
        ``num_keep`` and goes on (Ollama's context shift); without it generation ends there
        (``length``). An unlimited ``num_predict`` (-1) then stops at ten contexts' worth.
        A prompt longer than the context keeps its first ``num_keep`` and its last tokens
        (``truncate=True``) or is refused. Bad requests raise here (:class:`RequestError`,
        :class:`InferenceError`).

        ``images`` (base64 text or bytes) go where the prompt's ``[img-N]`` tags are; they
        need a projector.
        """
        started = time.perf_counter_ns()
        self._check_open()
        params = sampling_params(options if options is not None else self.resolve())
        cells, pieces = self._cells(prompt, images)
        try:
            # An image cannot be cut in half: a prompt with images fits or is refused.
            tokens, dropped = self._fit_prompt(
                cells, params.num_keep, truncate=truncate and not pieces
            )
            # Compile the grammar now so that a bad one fails before anything is queued.
            guard = self._grammar_guard(grammar) if grammar else None
        except BaseException:
            Images(pieces).close()
            raise
        sampler = Sampler(
            params, n_ctx=self.n_ctx, n_vocab=self.n_vocab, guard=guard, top_logprobs=top_logprobs
        )
        sampler.prime([t for t in tokens if t >= 0])  # an image's cells are not tokens
        # Unlimited (any num_predict below 1 but -2, "fill the context") with a context
        # shift would never end on a model that never stops: Ollama's cap of 10 contexts.
        budget = params.num_predict if params.num_predict > 0 else 0
        if params.num_predict != -2 and budget == 0 and shift:
            budget = 10 * self.n_ctx
        return Generation(
            tokens,
            params,
            sampler,
            emit,
            budget,
            shift=shift,
            started=started,
            load_duration=self.load_duration,
            truncated=dropped,
            images=Images(pieces),
        )

    def _cells(self, prompt: str, images: Seq[str | bytes]) -> tuple[list[int], list[ImagePiece]]:
        """The prompt's tokens, or with images its cells and image pieces (see .vision)."""
        if not images or not IMAGE_TAG.search(prompt):
            return self.tokenize(prompt), []
        if self.vision is None:
            raise RequestError("this model does not support images (it has no vision projector)")
        cells, pieces = self.vision.tokenize(prompt, images)
        if cells and cells[-1] < 0:
            Images(pieces).close()
            raise RequestError("the prompt must go on after its last image")
        return cells, pieces

    def submit(self, gen: Generation) -> None:
        """Queue ``gen``; it takes a slot as soon as one is free (see :class:`Batcher`)."""
        self.batcher.submit(gen)

    def cancel(self, gen: Generation) -> None:
        """Drop ``gen`` (its client left); its slot frees at the batcher's next step."""
        self.batcher.cancel(gen)

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
        images: Seq[str | bytes] = (),
    ) -> Generator[Chunk, None, None]:
        """:meth:`prepare` and :meth:`submit` as a generator of chunks: text deltas
        (``stream=True``) or one chunk with all the text, then/with the last chunk (``done``,
        ``stats``). Stop strings never appear in the output.

        The request is checked now; it is queued when the generator is first advanced and
        cancelled if the generator is closed before its end.
        """
        replies: queue.SimpleQueue[Chunk | BaseException] = queue.SimpleQueue()
        gen = self.prepare(
            prompt,
            options,
            replies.put,
            truncate=truncate,
            grammar=grammar,
            top_logprobs=top_logprobs,
            shift=shift,
            images=images,
        )
        return self._stream(gen, replies, stream=stream)

    def _stream(
        self,
        gen: Generation,
        replies: queue.SimpleQueue[Chunk | BaseException],
        *,
        stream: bool,
    ) -> Generator[Chunk, None, None]:
        ended = False
        held: list[Chunk] = []
        try:
            self.submit(gen)
            while not ended:
                reply = replies.get()
                if isinstance(reply, BaseException):
                    ended = True
                    raise reply
                ended = reply.done
                if stream:
                    yield reply
                else:
                    held.append(reply)
            if not stream:
                yield merged(held)
        finally:
            if not ended:
                self.cancel(gen)

    def _grammar_guard(self, gbnf: str) -> GrammarGuard:
        """A guard for ``gbnf``, copied from a compiled one kept for the next request with
        the same grammar (a JSON schema's grammar takes milliseconds to parse)."""
        with self._grammars_lock:
            compiled = self._grammars.pop(gbnf, None)
            if compiled is None:
                compiled = GrammarGuard(self.weights.vocab, gbnf, self.n_vocab)
            self._grammars[gbnf] = compiled  # the most recent last
            while len(self._grammars) > GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars))).close()
            return compiled.copy()

    def _fit_prompt(
        self, tokens: list[int], num_keep: int, *, truncate: bool
    ) -> tuple[list[int], int]:
        """The prompt cut to fit the context (its first ``num_keep`` tokens and its last
        ones, as Ollama cuts it), and how many tokens were dropped."""
        if not tokens:
            raise RequestError("the prompt is empty (no tokens)")
        if len(tokens) <= self.n_ctx:
            return tokens, 0
        if not truncate:
            raise RequestError(f"prompt is {len(tokens)} tokens, over num_ctx {self.n_ctx}")
        keep = min(max(num_keep, 0), self.n_ctx - 1)
        discard = len(tokens) - self.n_ctx
        log.warning(
            "truncating input prompt: limit=%d prompt=%d keep=%d", self.n_ctx, len(tokens), keep
        )
        return tokens[:keep] + tokens[keep + discard :], discard

    # -- embeddings --------------------------------------------------------------------------

    def embed(
        self, texts: Seq[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> list[list[float]]:
        """One L2-normalized vector per text (Ollama's /api/embed)."""
        return self.embed_with_stats(texts, truncate=truncate, dimensions=dimensions).vectors

    def embed_with_stats(
        self, texts: Seq[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> Embeddings:
        """:meth:`embed` plus the number of tokens evaluated (``prompt_eval_count``); see
        :meth:`.Embedder.embed`."""
        self._check_open()
        return self.embedder.embed(texts, truncate=truncate, dimensions=dimensions)
