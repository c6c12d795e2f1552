"""The messages between the server and a model's runner process, and how they travel.

One Unix stream socket per runner (a ``socketpair``; the runner gets its end as an inherited
file descriptor). Each message is a JSON object, framed as a 4-byte big-endian length and
that many bytes of UTF-8. Requests carry an ``id`` chosen by the server; every reply names
the ``id`` it answers.

==================  ===========================================  =============================
server → runner     fields                                        runner's replies
==================  ===========================================  =============================
``load``            ``name``, ``model``, ``adapters``,             ``ready`` (``pid``,
                    ``projector``, ``load`` (LoadParams),          ``kernels``) or
                    ``params`` (its PARAMETERs)                    ``load_error`` (``message``)
``tokenize``        ``id``, ``text``, ``add_special``              ``tokens``
``detokenize``      ``id``, ``tokens``                             ``text``
``generate``        ``id``, ``prompt``, ``options`` (Options        ``chunk`` … (``text``,
                    fields), ``truncate``, ``grammar``,            ``logprobs``; the first
                    ``top_logprobs``, ``shift``, ``images``        also ``truncated``), then
                    (base64, for the prompt's ``[img-N]``)         ``chunk`` with ``done`` and
                                                                   ``stats``; a step's chunks
                                                                   go out in one write
``embed``           ``id``, ``inputs``, ``truncate``,              ``embeddings`` (``vectors``,
                    ``dimensions``                                 ``prompt_eval_count``)
``cancel``          ``id`` (of a generate whose client left)       none; the slot frees
``health``          ``id``                                         ``health`` (``pid``,
                                                                   ``busy`` requests, decode
                                                                   ``steps`` so far;
                                                                   ``image_encodes``)
``shutdown``        –                                              the runner exits 0
==================  ===========================================  =============================

Any request may instead be answered by ``error`` (``message``, ``kind``: ``request`` for a
bad request → HTTP 400, ``inference`` → 500). When the runner dies, the socket closes: the
server fails whatever was in flight with the runner's exit status.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from dataclasses import asdict
from typing import Any

from modelkit.runtime.engine.results import Chunk, Embeddings, GenerationStats
from modelkit.runtime.logprobs import Logprob, TokenLogprob
from modelkit.runtime.options import LoadParams, Options

__all__ = [
    "Connection",
    "ConnectionClosed",
    "chunk_from_wire",
    "chunk_to_wire",
    "embeddings_from_wire",
    "load_params_from_wire",
    "options_from_wire",
    "options_to_wire",
]

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024  # a prompt of a few hundred MB is not a message but a fault


class ConnectionClosed(EOFError):
    """The other end closed the socket (or it broke)."""


class Connection:
    """Framed JSON messages over a stream socket: any thread may send, one thread receives."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._held: list[bytes] = []

    def send(self, message: dict[str, Any], *, later: bool = False) -> None:
        """Send ``message`` now, or with ``later`` keep it for the next :meth:`flush` (or
        the next plain send), so that several go out in one write."""
        data = json.dumps(message, separators=(",", ":")).encode()
        with self._send_lock:
            self._held.append(_HEADER.pack(len(data)) + data)
            if not later:
                self._write()

    def flush(self) -> None:
        """Send what :meth:`send` kept back."""
        with self._send_lock:
            if self._held:
                self._write()

    def _write(self) -> None:
        data, self._held = b"".join(self._held), []
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise ConnectionClosed(str(err)) from None

    def recv(self) -> dict[str, Any]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        if size > MAX_MESSAGE:
            raise ConnectionClosed(f"message of {size} bytes")
        message: dict[str, Any] = json.loads(self._read(size))
        return message

    def _read(self, size: int) -> bytes:
        parts: list[bytes] = []
        while size:
            try:
                part = self._sock.recv(min(size, 1 << 20))
            except OSError as err:
                raise ConnectionClosed(str(err)) from None
            if not part:
                raise ConnectionClosed("closed")
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


# -- dataclasses on the wire ---------------------------------------------------------------------


def options_to_wire(options: Options) -> dict[str, Any]:
    out = asdict(options)
    out["explicit"] = sorted(options.explicit)
    return out


def options_from_wire(data: dict[str, Any]) -> Options:
    return Options(**{**data, "explicit": set(data.get("explicit", ()))})


def load_params_from_wire(data: dict[str, Any]) -> LoadParams:
    return LoadParams(**data)


def _logprob_from_wire(data: dict[str, Any]) -> Logprob:
    return Logprob(
        chosen=TokenLogprob(**data["chosen"]),
        top=[TokenLogprob(**t) for t in data.get("top", [])],
    )


def chunk_to_wire(chunk: Chunk) -> dict[str, Any]:
    out: dict[str, Any] = {"text": chunk.text}
    if chunk.logprobs:
        out["logprobs"] = [asdict(lp) for lp in chunk.logprobs]
    if chunk.truncated:
        out["truncated"] = chunk.truncated
    if chunk.done:
        out["done"] = True
        out["stats"] = asdict(chunk.stats) if chunk.stats else None
    return out


def chunk_from_wire(data: dict[str, Any]) -> Chunk:
    stats = data.get("stats")
    return Chunk(
        text=data.get("text", ""),
        done=bool(data.get("done")),
        stats=GenerationStats(**stats) if stats else None,
        logprobs=[_logprob_from_wire(lp) for lp in data.get("logprobs", [])],
        truncated=int(data.get("truncated", 0)),
    )


def embeddings_from_wire(data: dict[str, Any]) -> Embeddings:
    return Embeddings(vectors=data["vectors"], prompt_eval_count=data["prompt_eval_count"])
