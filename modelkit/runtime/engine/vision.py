"""A model's vision projector (llama.cpp's libmtmd): prompts with ``[img-N]`` tags become
prompt cells and image pieces; images are encoded on a thread of the projector's own.

An image takes as many prompt cells as the positions it fills (mtmd's ``n_pos``; M-RoPE models
use fewer positions than embeddings), each holding the same negative pseudo-token derived from
the image's digest, so the prompt cache reuses a slot that holds the same image at the same
place without encoding or decoding it again. Encoded embeddings are also kept, by digest, for
the next request that shows the same image elsewhere.
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.engine.weights import Weights, llama
from modelkit.runtime.images import (
    IMAGE_TAG,
    DecodedImage,
    decode_image,
    image_bytes,
    image_digest,
)

__all__ = ["ImagePiece", "Vision", "image_cell"]

log = logging.getLogger(__name__)

MARKER: Final = "<__modelkit_media_5f1d__>"
"""The media marker handed to mtmd: unlike its default, no prompt writes it by accident."""

EMBEDDINGS_KEPT: Final = 16
"""Encoded images kept by digest (the least recently used dropped first)."""

PIXELS_KEPT: Final = 64 << 20
"""Bytes of decoded pixels kept by digest: the next turn about a picture does not decode its
file again (on a small model that costs more than the rest of the turn)."""

_logs_routed = False

_CHUNK_TEXT: Final = 0
_CHUNK_IMAGE: Final = 1


def mtmd() -> Any:
    """``llama_cpp.mtmd_cpp`` (present when llama-cpp-python was built with LLAVA_BUILD)."""
    global _logs_routed
    llama()
    try:
        lib = importlib.import_module("llama_cpp.mtmd_cpp")
    except (ImportError, OSError) as err:
        raise InferenceError(
            "this llama-cpp-python has no vision support (libmtmd): reinstall it with "
            f"CMAKE_ARGS=-DLLAVA_BUILD=ON ({err})"
        ) from None
    if not _logs_routed:
        # libmtmd logs to stderr by itself; send it where llama.cpp's log goes (the
        # "llama-cpp-python" logger, which is quiet unless the model was loaded verbose)
        route = importlib.import_module("llama_cpp._logger").llama_log_callback
        lib.mtmd_log_set(route, None)
        lib.mtmd_helper_log_set(route, None)
        _logs_routed = True
    return lib


def image_cell(digest: str) -> int:
    """The pseudo-token an image's prompt cells hold: negative (no real token is) and the
    same for the same image bytes."""
    return -1 - int(digest.removeprefix("sha256:")[:8], 16) % (2**31 - 2)


@dataclass(eq=False)
class ImagePiece:
    """One image of a prompt: cells ``start`` to ``start + n_pos`` of it; its mtmd chunk
    (owned, freed by :meth:`close`) and, once encoded, its embeddings."""

    start: int
    n_pos: int
    n_tokens: int
    digest: str
    chunk: Any
    embeddings: Any = None
    error: Exception | None = None
    queued: bool = False

    @property
    def ready(self) -> bool:
        return self.embeddings is not None or self.error is not None

    def close(self) -> None:
        if self.chunk is not None:
            mtmd().mtmd_input_chunk_free(self.chunk)
            self.chunk = None


@dataclass
class _Job:
    piece: ImagePiece
    done: Callable[[ImagePiece, Any, Exception | None], None]


@dataclass
class VisionStats:
    """What the projector has done (for tests, benchmarks and the runner's health)."""

    encodes: int = 0
    encode_ns: int = 0
    reused: int = 0
    """Images whose embeddings came from the kept ones instead of the encoder."""


class Vision:
    """The projector of a loaded model; ``close()`` frees it. Loading fails with
    :class:`InferenceError` (a projector that does not match the model, a build without mtmd).
    """

    def __init__(self, path: Path, weights: Weights, *, n_threads: int) -> None:
        lib = mtmd()
        if not path.is_file():
            raise InferenceError(f"vision projector not found: {path}")
        params = lib.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        # The projector encodes beside the batcher's decodes; the two share the CPU threads
        # (ggml's barriers stall for a scheduler slice per operation when oversubscribed).
        self.n_threads = max(1, n_threads // 2)
        params.n_threads = self.n_threads
        params.warmup = False
        self._marker = MARKER.encode()
        params.media_marker = self._marker
        self.ctx = lib.mtmd_init_from_file(str(path).encode(), weights.model.model, params)
        if not self.ctx:
            raise InferenceError(
                f"failed to load vision projector {path} (wrong format, or not made for "
                "this model?)"
            )
        if not lib.mtmd_support_vision(self.ctx):
            lib.mtmd_free(self.ctx)
            raise InferenceError(f"{path} is not a vision projector")
        self.path = path
        self.n_embd = weights.n_embd
        self.stats = VisionStats()
        self.encoding = False
        """An image is being encoded now (the batcher decodes with fewer threads meanwhile)."""
        self._lock = threading.Lock()  # the mtmd context is used by one thread at a time
        self._kept: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._pixels: collections.OrderedDict[str, DecodedImage] = collections.OrderedDict()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="modelkit-vision", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        with self._lock:
            mtmd().mtmd_free(self.ctx)
            self.ctx = None

    # -- prompts -----------------------------------------------------------------------------

    def tokenize(
        self, prompt: str, images: Seq[str | bytes], *, add_special: bool = True
    ) -> tuple[list[int], list[ImagePiece]]:
        """The prompt's cells (token ids, and each image's pseudo-tokens where its ``[img-N]``
        tag is) and its image pieces. Images no tag names are left out (as in Ollama, a
        message dropped to fit the context takes its images with it)."""
        order = [int(m.group(1)) for m in IMAGE_TAG.finditer(prompt)]
        for n in order:
            if n >= len(images):
                raise RequestError(f"invalid image index: {n} (the request has {len(images)})")
        text = IMAGE_TAG.sub(lambda _: MARKER, prompt)
        decoded = {n: self._decoded(images[n], n) for n in set(order)}
        lib = mtmd()
        bitmaps: list[Any] = []
        chunks = lib.mtmd_input_chunks_init()
        try:
            for n in order:
                bitmaps.append(self._bitmap(lib, decoded[n]))
            array = (lib.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
            data = text.encode("utf-8")
            inp = lib.mtmd_input_text(data, len(data), add_special, True)
            with self._lock:
                rc = lib.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                raise RequestError(f"the projector could not take the images (mtmd error {rc})")
            return self._cells(lib, chunks)
        finally:
            lib.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                lib.mtmd_bitmap_free(bitmap)

    def _decoded(self, image: str | bytes, index: int) -> DecodedImage:
        """The image's pixels, from those kept when its file was decoded lately."""
        data = image_bytes(image, index)
        digest = image_digest(data)
        with self._lock:
            kept = self._pixels.get(digest)
            if kept is not None:
                self._pixels.move_to_end(digest)
                return kept
        decoded = decode_image(data, index, digest=digest)
        with self._lock:
            self._pixels[digest] = decoded
            while sum(len(p.rgb) for p in self._pixels.values()) > PIXELS_KEPT:
                self._pixels.popitem(last=False)
        return decoded

    def _bitmap(self, lib: Any, image: DecodedImage) -> Any:
        pixels = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
        bitmap = lib.mtmd_bitmap_init(image.width, image.height, pixels)
        if not bitmap:
            raise InferenceError("the projector could not take an image")
        lib.mtmd_bitmap_set_id(bitmap, image.digest.encode())
        return bitmap

    def _cells(self, lib: Any, chunks: Any) -> tuple[list[int], list[ImagePiece]]:
        cells: list[int] = []
        pieces: list[ImagePiece] = []
        try:
            for i in range(lib.mtmd_input_chunks_size(chunks)):
                chunk = lib.mtmd_input_chunks_get(chunks, i)
                kind = lib.mtmd_input_chunk_get_type(chunk)
                if kind == _CHUNK_TEXT:
                    n = ctypes.c_size_t()
                    tokens = lib.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    cells += tokens[: n.value]
                    continue
                if kind != _CHUNK_IMAGE:
                    raise RequestError("only images are supported by this server, not audio")
                digest = (lib.mtmd_input_chunk_get_id(chunk) or b"").decode()
                piece = ImagePiece(
                    start=len(cells),
                    n_pos=lib.mtmd_input_chunk_get_n_pos(chunk),
                    n_tokens=lib.mtmd_input_chunk_get_n_tokens(chunk),
                    digest=digest,
                    chunk=lib.mtmd_input_chunk_copy(chunk),
                )
                pieces.append(piece)
                cells += [image_cell(digest)] * piece.n_pos
        except BaseException:
            for piece in pieces:
                piece.close()
            raise
        return cells, pieces

    # -- encoding (the projector's thread) ---------------------------------------------------

    def encode(
        self, piece: ImagePiece, done: Callable[[ImagePiece, Any, Exception | None], None]
    ) -> None:
        """Encode ``piece`` on the projector's thread, then call ``done(piece, embeddings,
        error)`` there; an image encoded lately is handed back at once, on this thread."""
        with self._lock:
            kept = self._kept.get(piece.digest)
            if kept is not None:
                self._kept.move_to_end(piece.digest)
                self.stats.reused += 1
        if kept is not None:
            done(piece, kept, None)
            return
        piece.queued = True
        self._jobs.put(_Job(piece, done))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.encoding = True
            try:
                embeddings, error = self._encode(job.piece), None
            except Exception as err:  # that image's request fails, not the projector
                embeddings, error = None, err
            finally:
                self.encoding = False
            try:
                job.done(job.piece, embeddings, error)
            except Exception:
                log.exception("an encoded image could not be handed back")

    def _encode(self, piece: ImagePiece) -> Any:
        lib = mtmd()
        with self._lock:
            kept = self._kept.get(piece.digest)
            if kept is not None:
                self.stats.reused += 1
                return kept
            started = time.perf_counter_ns()
            if lib.mtmd_encode_chunk(self.ctx, piece.chunk) != 0:
                raise InferenceError("the projector failed to encode an image")
            size = piece.n_tokens * self.n_embd
            out = lib.mtmd_get_output_embd(self.ctx)
            embeddings = (ctypes.c_float * size)()
            ctypes.memmove(embeddings, out, size * ctypes.sizeof(ctypes.c_float))
            self.stats.encodes += 1
            self.stats.encode_ns += time.perf_counter_ns() - started
            self._kept[piece.digest] = embeddings
            while len(self._kept) > EMBEDDINGS_KEPT:
                self._kept.popitem(last=False)
        return embeddings

    # -- decoding (the batcher's thread) -----------------------------------------------------

    def decode(self, piece: ImagePiece, lctx: Any, n_past: int, seq: int, n_batch: int) -> int:
        """Put ``piece``'s embeddings into sequence ``seq`` at ``n_past``; the next position."""
        lib = mtmd()
        new_n_past = llama().llama_pos(0)
        rc = lib.mtmd_helper_decode_image_chunk(
            self.ctx,
            lctx,
            piece.chunk,
            piece.embeddings,
            n_past,
            seq,
            n_batch,
            ctypes.byref(new_n_past),
            lib.mtmd_helper_post_decode_callback(),  # none (a NULL function pointer)
            None,
        )
        if rc != 0:
            raise InferenceError(f"decoding an image failed with code {rc}")
        return int(new_n_past.value)


@dataclass
class Images:
    """A generation's image pieces in prompt order (empty for text)."""

    pieces: list[ImagePiece] = field(default_factory=list)

    def next_after(self, evaluated: int) -> ImagePiece | None:
        """The first image not yet wholly in the KV cache once ``evaluated`` cells are."""
        return next((p for p in self.pieces if p.start + p.n_pos > evaluated), None)

    def close(self) -> None:
        for piece in self.pieces:
            piece.close()
