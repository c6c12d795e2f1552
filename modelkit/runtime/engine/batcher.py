"""The batcher: one thread that owns a generation context and its batch, and runs every
request in it, step by step (continuous batching).

Each step is one ``llama_decode`` holding the next token of every generating request and, in
what room is left, a chunk of a newcomer's prompt, in slot order (llama.cpp splits a batch
whose sequences come out of order into several micro-batches). Then each request that has
logits in the batch samples its token and hands out its text. Requests come and go between
steps: a new one waits only for the step under way, and a long prompt is evaluated a chunk at
a time, so it holds the others up for one chunk at most.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from modelkit.errors import InferenceError
from modelkit.runtime.engine.generation import Generation
from modelkit.runtime.engine.slots import SlotCache
from modelkit.runtime.engine.vision import ImagePiece, Vision
from modelkit.runtime.engine.weights import Weights, internals, llama

__all__ = ["PROMPT_CHUNK", "BatchEntry", "Batcher"]

log = logging.getLogger(__name__)

PROMPT_CHUNK: Final = 128
"""Most prompt tokens decoded in one step while other requests are generating: a step of
128 prompt tokens costs about as much as 8 generation steps, and keeps the others flowing."""


@dataclass
class BatchEntry:
    """A token in the batch: at ``pos`` in ``slot``'s sequence; ``logits`` wanted or not."""

    token: int
    pos: int
    slot: int
    logits: bool


class Batcher:
    """Runs generations in ``ctx`` (a llama context wrapper with ``n_slots`` sequences of
    ``n_ctx`` positions each) on a thread of its own; ``stop()`` ends it.

    ``submit`` queues a :class:`Generation`; its chunks and end go to its ``emit``. A request
    waits while every slot is busy. ``cancel`` drops one (its slot frees at the next step).
    """

    def __init__(
        self,
        weights: Weights,
        ctx: Any,
        *,
        n_slots: int,
        n_ctx: int,
        n_batch: int,
        n_threads: int = 1,
        vision: Vision | None = None,
        cache_prompt: bool = True,
    ) -> None:
        self.vision = vision
        """The model's projector, when it has one (it encodes the prompts' images)."""
        self.after_step: Callable[[], None] | None = None
        """Called after each step's chunks are emitted (the runner sends them in one write)."""
        self.weights = weights
        self.ctx = ctx
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_threads = n_threads
        self._threads_set = n_threads
        self.slots = SlotCache(ctx, n_slots, cache_prompt=cache_prompt)
        self._batch: Any = internals().LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1)
        self._waiting: collections.deque[Generation] = collections.deque()
        self._running: dict[int, Generation] = {}  # by slot
        self._wake = threading.Condition()
        self._stopping = False
        self._holds = 0
        self.steps = 0
        """Decodes done (for tests and benchmarks)."""
        self._thread = threading.Thread(target=self._loop, name="modelkit-batcher", daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------------

    def submit(self, gen: Generation) -> None:
        with self._wake:
            if self._stopping:
                raise InferenceError("the model has been unloaded")
            self._waiting.append(gen)
            self._wake.notify()

    def cancel(self, gen: Generation) -> None:
        gen.cancelled = True
        with self._wake:
            self._wake.notify()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No step starts inside this block (the one under way finishes): requests submitted
        in it start together (for tests and benchmarks)."""
        with self._wake:
            self._holds += 1
        try:
            yield
        finally:
            with self._wake:
                self._holds -= 1
                self._wake.notify()

    @property
    def busy(self) -> int:
        """Requests admitted or waiting."""
        with self._wake:
            return len(self._running) + len(self._waiting)

    def stop(self) -> None:
        """End the thread; requests still in flight fail with "the model has been unloaded"."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._batch.close()

    # -- the batcher's thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(self._ready)
                if self._stopping:
                    break
                self._admit()
            self._drop_cancelled()
            if self._running:
                self.step()
                if self.after_step is not None:
                    self.after_step()
        unloaded = InferenceError("the model has been unloaded")
        for gen in list(self._running.values()):
            self._release(gen, keep=False)
            gen.emit(unloaded)
        while self._waiting:
            gen = self._waiting.popleft()
            gen.close()
            gen.emit(unloaded)

    def _ready(self) -> bool:
        if self._stopping:
            return True
        if self._holds:
            return False
        if any(not _waits_for_encoder(g) for g in self._running.values()):
            return True
        return bool(self._waiting) and self.slots.free > 0

    def _admit(self) -> None:
        """Give waiting requests the free slots (under ``_wake``)."""
        while self._waiting and self.slots.free:
            gen = self._waiting.popleft()
            if gen.cancelled:
                gen.close()
                continue
            slot, cached = self.slots.take(gen.prompt)
            gen.admit(slot, cached)
            self._running[slot] = gen
            self._encode_images(gen)

    def _encode_images(self, gen: Generation) -> None:
        """Start encoding the images the slot's cache does not hold: the projector works on
        its own thread while this one decodes the others' steps (and ``gen``'s text)."""
        for piece in gen.images.pieces:
            if piece.start >= gen.evaluated and not piece.queued and self.vision is not None:
                self.vision.encode(piece, self._encoded)

    def _encoded(self, piece: ImagePiece, embeddings: Any, error: Exception | None) -> None:
        with self._wake:
            piece.embeddings, piece.error = embeddings, error
            self._wake.notify()

    def _drop_cancelled(self) -> None:
        for gen in [g for g in self._running.values() if g.cancelled]:
            self._release(gen, keep=False)

    def _release(self, gen: Generation, *, keep: bool) -> None:
        del self._running[gen.slot]
        self.slots.give_back(gen.slot, gen.kv_tokens() if keep else [])
        gen.close()
        with self._wake:
            self._wake.notify()  # a waiting request may take the slot

    def _plan(self) -> tuple[list[BatchEntry], list[tuple[Generation, int]], list[Generation]]:
        """The next batch, in slot order, who samples at which of its positions, and whose
        encoded image goes in next (a decode of its own: llama.cpp takes tokens or embeddings
        in a batch, not both)."""
        generating = sum(1 for g in self._running.values() if not g.prefilling)
        room = self.n_batch - generating
        if generating:
            room = min(room, PROMPT_CHUNK)
        entries: list[BatchEntry] = []
        samples: list[tuple[Generation, int]] = []
        images: list[Generation] = []
        for slot in sorted(self._running):
            gen = self._running[slot]
            if not gen.prefilling:
                entries.append(BatchEntry(gen.generated[-1], gen.n_past - 1, slot, True))
                samples.append((gen, len(entries) - 1))
                continue
            piece = gen.image_due
            if piece is not None:
                if piece.ready:
                    images.append(gen)
                continue
            following = gen.images.next_after(gen.evaluated)
            end = following.start if following is not None else len(gen.prompt)
            take = min(room, end - gen.evaluated)
            if take <= 0:
                continue
            room -= take
            start = gen.evaluated
            gen.evaluated += take
            for i in range(start, start + take):
                last = i == len(gen.prompt) - 1
                entries.append(BatchEntry(gen.prompt[i], i, slot, last))
            if not gen.prefilling:
                samples.append((gen, len(entries) - 1))
        return entries, samples, images

    def step(self) -> None:
        """One decode of every running request, then their samples."""
        entries, samples, images = self._plan()
        if entries:
            try:
                self.decode(entries)
            except Exception as err:  # the decode failed: every request in the batch did
                for slot in {e.slot for e in entries}:
                    self._fail(self._running[slot], err)
            else:
                for gen, idx in samples:
                    self._advance(gen, idx)
        for gen in images:
            self._decode_image(gen)

    def _decode_image(self, gen: Generation) -> None:
        """Put ``gen``'s next image (encoded) into its sequence."""
        piece = gen.image_due
        assert piece is not None and self.vision is not None
        try:
            if piece.error is not None:
                raise piece.error
            self.steps += 1
            self._share_threads()
            self.vision.decode(piece, self.ctx.ctx, gen.evaluated, gen.slot, self.n_batch)
        except Exception as err:  # that request's image: that request's failure
            self._fail(gen, err)
            return
        gen.evaluated += piece.n_pos

    def _share_threads(self) -> None:
        """Decode with the threads the projector leaves while it encodes an image, and with
        all of them otherwise: never more threads than the CPU was given."""
        vision = self.vision
        threads = self.n_threads
        if vision is not None and vision.encoding:
            threads = max(1, threads - vision.n_threads)
        if threads != self._threads_set:
            llama().llama_set_n_threads(self.ctx.ctx, threads, threads)
            self._threads_set = threads

    def decode(self, entries: list[BatchEntry]) -> None:
        self._share_threads()
        batch = self._batch.batch
        batch.n_tokens = len(entries)
        for i, e in enumerate(entries):
            batch.token[i] = e.token
            batch.pos[i] = e.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = e.slot
            batch.logits[i] = e.logits
        self.steps += 1
        rc = llama().llama_decode(self.ctx.ctx, batch)
        if rc != 0:
            raise InferenceError(f"llama_decode failed with code {rc}")

    def _advance(self, gen: Generation, idx: int) -> None:
        """Sample ``gen``'s next token from batch position ``idx`` and hand out its text."""
        try:
            token = gen.sampler.sample(self.ctx, idx)
            chunk = gen.take(token, self.weights)
            if chunk is not None:
                gen.emit(chunk)
            if not gen.done and gen.context_full(self.n_ctx) and not self._shift(gen):
                gen.done_reason = "length"  # the context is full
            if gen.done:
                final = gen.finish(self.weights)
                self._release(gen, keep=True)
                gen.emit(final)
        except Exception as err:  # one request's failure is that request's only
            self._fail(gen, err)

    def _fail(self, gen: Generation, err: Exception) -> None:
        if self._running.get(gen.slot) is gen:
            self._release(gen, keep=False)
        try:
            gen.emit(err)
        except Exception:  # a broken emit must not end the thread that serves the others
            log.exception("a generation's error could not be delivered")

    def _shift(self, gen: Generation) -> bool:
        """Make room in ``gen``'s full slot, when the request and the model allow it."""
        if not gen.shift or gen.params.num_predict == -2:  # -2: fill the context, then stop
            return False
        in_cache = gen.n_past - 1  # the last sampled token is not decoded yet
        dropped = self.slots.shift(gen.slot, in_cache, gen.params.num_keep, self.n_ctx)
        gen.discarded += dropped
        return dropped > 0


def _waits_for_encoder(gen: Generation) -> bool:
    """``gen`` can do nothing until the projector hands back the image it is at."""
    piece = gen.image_due
    return piece is not None and piece.queued and not piece.ready
