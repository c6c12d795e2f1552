"""The runner program: one model's llama.cpp context in a process of its own
(``python -m modelkit.runtime.runner FD SERVER_PID``), serving the protocol of :mod:`.protocol`.

A native crash here (a segfault in a kernel, an abort, the OOM killer) ends this process only:
the server fails this model's requests and starts a new runner. This process reads requests on
its main thread and queues generations to the engine's batcher, whose thread decodes them all
and sends their chunks; a cancel frees the request's slot at the next step. The runner exits
when its parent goes (``PR_SET_PDEATHSIG``, and the socket closing) so that no model outlives
the server.

Fault injection, for tests (read by the runner only): ``MODELKIT_RUNNER_CRASH_AFTER`` is
``N`` or ``MODEL=N`` (a real SIGSEGV, through ctypes, at the N-th token of a generation, in
every runner or in MODEL's only); ``MODELKIT_RUNNER_CRASH_UNSAFE=1`` crashes at the first
token unless the runner has llama.cpp's safe kernels; ``MODELKIT_RUNNER_CRASH_ONCE=PATH``
makes either fire once (the first runner to crash creates PATH; later runners do not crash).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from modelkit.errors import RequestError
from modelkit.runtime.engine import Chunk, LoadedModel
from modelkit.runtime.engine.generation import Generation
from modelkit.runtime.runner.protocol import (
    Connection,
    ConnectionClosed,
    chunk_to_wire,
    load_params_from_wire,
    options_from_wire,
)

log = logging.getLogger("modelkit.runner")

CRASH_AFTER = "MODELKIT_RUNNER_CRASH_AFTER"
CRASH_UNSAFE = "MODELKIT_RUNNER_CRASH_UNSAFE"
CRASH_ONCE = "MODELKIT_RUNNER_CRASH_ONCE"
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int | None) -> None:
    """Ask Linux to SIGKILL this process when the server that started it (pid ``parent``)
    dies, and exit now if it already has. (Comparing with 1 would not do: in a container
    without an init the server itself is PID 1.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the closed socket still ends the runner
        pass
    orphaned = os.getppid() == 1 if parent is None else os.getppid() != parent
    if orphaned:  # re-parented: the server is gone already
        os._exit(0)


class _Faults:
    """The crash injection the environment asks for (tests only)."""

    def __init__(self, name: str, safe: bool) -> None:
        model, _, count = os.environ.get(CRASH_AFTER, "").rpartition("=")
        mine = not model or model in (name, name.split(":")[0])
        self.after = int(count) if count.isdigit() and mine else None
        self.on_first = os.environ.get(CRASH_UNSAFE) == "1" and not safe
        self.once = os.environ.get(CRASH_ONCE, "")
        self.lock = threading.Lock()

    def token(self, count: int) -> None:
        """Called before a generation's ``count``-th chunk goes out."""
        with self.lock:
            due = self.on_first or (self.after is not None and count >= self.after)
            if not due:
                return
            if self.once:
                try:
                    os.close(os.open(self.once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    self.on_first, self.after = False, None  # fired already
                    return
            ctypes.string_at(0)  # a real SIGSEGV, as a broken kernel would give


class Runner:
    """Serves one loaded model over a connection until the server says stop or goes away."""

    def __init__(self, conn: Connection, model: LoadedModel, faults: _Faults) -> None:
        self.conn = conn
        self.model = model
        self.faults = faults
        self.generations: dict[int, Generation] = {}
        self.lock = threading.Lock()
        model.batcher.after_step = self._flush

    def _flush(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.conn.flush()

    def serve(self) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "generate": self._generate,
            "tokenize": self._tokenize,
            "detokenize": self._detokenize,
            "health": self._health,
        }
        while True:
            try:
                msg = self.conn.recv()
            except ConnectionClosed:
                os._exit(0)  # the server is gone: nothing here is worth finishing
            op = msg.get("op")
            if op == "shutdown":
                return
            if op == "cancel":
                with self.lock:
                    gen = self.generations.pop(msg["id"], None)
                if gen is not None:
                    self.model.cancel(gen)
            elif op == "embed":  # its own context: on a thread, beside the batcher's
                threading.Thread(target=self._guarded, args=(self._embed, msg), daemon=True).start()
            elif op in handlers:
                self._guarded(handlers[op], msg)
            else:
                self.conn.send({"id": msg.get("id"), "op": "error", "message": f"unknown op {op}"})

    def _guarded(self, work: Callable[[dict[str, Any]], None], msg: dict[str, Any]) -> None:
        """Run ``work``; its exception becomes the request's ``error`` reply."""
        try:
            work(msg)
        except ConnectionClosed:
            pass
        except Exception as err:  # every failure goes back to the one request it belongs to
            self._send_error(msg.get("id"), err)

    def _send_error(self, request_id: int | None, err: BaseException) -> None:
        kind = "request" if isinstance(err, RequestError) else "inference"
        with contextlib.suppress(ConnectionClosed):
            self.conn.send({"id": request_id, "op": "error", "message": str(err), "kind": kind})

    def _tokenize(self, msg: dict[str, Any]) -> None:
        tokens = self.model.tokenize(msg["text"], add_special=msg.get("add_special", True))
        self.conn.send({"id": msg["id"], "op": "tokens", "tokens": tokens})

    def _detokenize(self, msg: dict[str, Any]) -> None:
        text = self.model.detokenize(msg["tokens"])
        self.conn.send({"id": msg["id"], "op": "text", "text": text})

    def _health(self, msg: dict[str, Any]) -> None:
        batcher = self.model.batcher
        reply = {"pid": os.getpid(), "busy": batcher.busy, "steps": batcher.steps}
        if self.model.vision is not None:
            reply["image_encodes"] = self.model.vision.stats.encodes
        self.conn.send({"id": msg["id"], "op": "health", **reply})

    def _generate(self, msg: dict[str, Any]) -> None:
        """Check and queue a generation; the batcher's thread sends its chunks."""
        request_id: int = msg["id"]
        sent = 0

        def emit(item: Chunk | BaseException) -> None:
            nonlocal sent
            if gen.cancelled:
                return
            if isinstance(item, BaseException):
                self._forget(request_id)
                self._send_error(request_id, item)
                return
            sent += 1
            self.faults.token(sent)
            if item.done:
                self._forget(request_id)
            with contextlib.suppress(ConnectionClosed):
                # sent with the step's other chunks, in one write (see __init__)
                self.conn.send({"id": request_id, "op": "chunk", **chunk_to_wire(item)}, later=True)

        gen = self.model.prepare(
            msg["prompt"],
            options_from_wire(msg["options"]),
            emit,
            truncate=msg.get("truncate", True),
            grammar=msg.get("grammar"),
            top_logprobs=msg.get("top_logprobs"),
            shift=msg.get("shift", True),
            images=msg.get("images") or (),
        )
        with self.lock:
            self.generations[request_id] = gen
        self.model.submit(gen)

    def _forget(self, request_id: int) -> None:
        with self.lock:
            self.generations.pop(request_id, None)

    def _embed(self, msg: dict[str, Any]) -> None:
        result = self.model.embed_with_stats(
            msg["inputs"], truncate=msg.get("truncate", True), dimensions=msg.get("dimensions")
        )
        self.conn.send(
            {
                "id": msg["id"],
                "op": "embeddings",
                "vectors": result.vectors,
                "prompt_eval_count": result.prompt_eval_count,
            }
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or not all(a.isdigit() for a in args):
        print(
            "usage: python -m modelkit.runtime.runner FD [SERVER_PID] (started by modelkit serve)",
            file=sys.stderr,
        )
        return 2
    _die_with_parent(int(args[1]) if len(args) == 2 else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the server, which stops us
    logging.basicConfig(level=os.environ.get("MODELKIT_RUNNER_LOG", "WARNING"), stream=sys.stderr)
    conn = Connection(socket.socket(fileno=int(args[0])))
    try:
        load = conn.recv()
    except ConnectionClosed:
        return 0
    params = load_params_from_wire(load["load"])
    try:
        model = LoadedModel(
            load["model"],
            adapters=load.get("adapters", ()),
            projector=load.get("projector"),
            load=params,
            model_params=load.get("params"),
        )
    except Exception as err:  # a model that does not load is the server's error to report
        conn.send({"op": "load_error", "message": str(err)})
        return 1
    conn.send({"op": "ready", "pid": os.getpid(), "kernels": model.kernels.name})
    try:
        Runner(conn, model, _Faults(load.get("name", ""), params.safe_kernels)).serve()
    finally:
        model.close()
        conn.close()
    return 0
