"""The server's side of a runner: starts the runner process for one model, and offers the
model's calls (tokenize, generate, embed, …) as if it were loaded here.

A reader thread hands each reply to the request that waits for it. When the runner dies, every
request in flight fails with :class:`RunnerStoppedError` naming the model and how it ended
(``signal 11 (SIGSEGV)``), and ``on_exit`` tells the owner (the scheduler forgets it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from modelkit.errors import InferenceError, RequestError
from modelkit.exits import describe_exit
from modelkit.runtime.engine.results import Chunk, Embeddings
from modelkit.runtime.options import LoadParams, Options
from modelkit.runtime.runner.protocol import (
    Connection,
    ConnectionClosed,
    chunk_from_wire,
    embeddings_from_wire,
    options_to_wire,
)

__all__ = ["RunnerProcess", "RunnerStoppedError", "describe_exit"]

log = logging.getLogger(__name__)


class RunnerStoppedError(InferenceError):
    """The model's runner process ended while a request needed it."""

    def __init__(self, message: str, *, before_first_token: bool) -> None:
        super().__init__(message)
        self.before_first_token = before_first_token


_DIED = object()  # put on a request's queue when the runner is gone

# Linux sends a child its parent-death signal when the *thread* that forked it ends, not the
# process: runners are started from this one thread, which lives as long as the server.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelkit-runner-spawner")


class RunnerProcess:
    """One model in a runner process; thread-safe. ``close()`` stops it and waits."""

    def __init__(
        self,
        name: str,
        model_path: Path,
        load: LoadParams,
        *,
        adapters: Sequence[Path] = (),
        projector: Path | None = None,
        params: dict[str, Any] | None = None,
        load_timeout: float = 300.0,
        on_exit: Callable[[RunnerProcess], None] | None = None,
    ) -> None:
        self.name = name
        self.on_exit = on_exit
        self.decoded = False  # a generation has produced a token: the kernels work
        self.exit_reason: str | None = None
        ours, theirs = socket.socketpair()
        try:
            self.process = _SPAWNER.submit(
                subprocess.Popen,
                [
                    sys.executable,
                    "-m",
                    "modelkit.runtime.runner",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            ).result()
        finally:
            theirs.close()
        self._conn = Connection(ours)
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.SimpleQueue[Any]] = {}
        self._lock = threading.Lock()
        self._closing = False
        try:
            ours.settimeout(load_timeout if load_timeout > 0 else None)
            self._conn.send(
                {
                    "op": "load",
                    "name": name,
                    "model": str(model_path),
                    "adapters": [str(a) for a in adapters],
                    "projector": str(projector) if projector is not None else None,
                    "load": asdict(load),
                    "params": params or {},
                }
            )
            ready = self._conn.recv()
            ours.settimeout(None)
        except (ConnectionClosed, TimeoutError) as err:
            self._kill()
            how = describe_exit(self.process.poll())
            if isinstance(err, TimeoutError):
                how = f"did not load within {load_timeout:.0f} s"
            raise InferenceError(f"model runner for {name} stopped while loading: {how}") from None
        if ready.get("op") != "ready":
            self._kill()
            raise InferenceError(str(ready.get("message", "the model runner failed to load")))
        self.pid: int = ready["pid"]
        self.kernels: str = ready["kernels"]
        self._reader = threading.Thread(target=self._read, name=f"runner-{self.pid}", daemon=True)
        self._reader.start()

    # -- what the scheduler and /api/ps see ----------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.exit_reason is None

    def rss(self) -> int:
        """Resident memory of the runner process in bytes (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def close(self) -> None:
        """Ask the runner to exit, and make sure it has (SIGKILL after 10 s)."""
        self._closing = True
        with contextlib.suppress(ConnectionClosed):
            self._conn.send({"op": "shutdown"})
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
        self._conn.close()
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    # -- the model's calls ---------------------------------------------------------------------

    def health(self) -> dict[str, int]:
        """The runner's pid, how many requests it is running or holding, its decode steps so
        far (it answers between steps: a reply means its batcher is alive) and, with a
        projector, how many images it has encoded."""
        reply = self._call({"op": "health"})
        keys = ("pid", "busy", "steps", "image_encodes")
        return {key: int(reply[key]) for key in keys if key in reply}

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        reply = self._call({"op": "tokenize", "text": text, "add_special": add_special})
        tokens: list[int] = reply["tokens"]
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        text: str = self._call({"op": "detokenize", "tokens": list(tokens)})["text"]
        return text

    def embed_with_stats(
        self, texts: Sequence[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> Embeddings:
        msg = {"op": "embed", "inputs": list(texts), "truncate": truncate, "dimensions": dimensions}
        return embeddings_from_wire(self._call(msg))

    def generate(
        self,
        prompt: str,
        options: Options,
        *,
        truncate: bool = True,
        grammar: str | None = None,
        top_logprobs: int | None = None,
        shift: bool = True,
        images: Sequence[str] = (),
    ) -> Generator[Chunk, None, None]:
        """The answer's chunks as the runner sends them; closing the generator early cancels
        the request in the runner (its slot frees at once)."""
        request_id, replies = self._open()
        msg = {
            "op": "generate",
            "id": request_id,
            "prompt": prompt,
            "options": options_to_wire(options),
            "truncate": truncate,
            "grammar": grammar,
            "top_logprobs": top_logprobs,
            "shift": shift,
            "images": list(images),
        }
        return self._stream(request_id, replies, msg)

    def _stream(
        self, request_id: int, replies: queue.SimpleQueue[Any], msg: dict[str, Any]
    ) -> Generator[Chunk, None, None]:
        done = False
        first = True
        try:
            self._send(msg)
            while not done:
                reply = self._reply(replies, before_first_token=first)
                chunk = chunk_from_wire(reply)
                first = False
                self.decoded = True
                done = chunk.done
                yield chunk
        finally:
            self._forget(request_id)
            if not done and self.alive:
                self._send({"op": "cancel", "id": request_id})

    # -- plumbing ------------------------------------------------------------------------------

    def _open(self) -> tuple[int, queue.SimpleQueue[Any]]:
        replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            request_id = next(self._ids)
            if not self.alive:
                raise self._stopped(before_first_token=True)
            self._pending[request_id] = replies
        return request_id, replies

    def _forget(self, request_id: int) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def _send(self, msg: dict[str, Any]) -> None:
        # a runner that is gone is seen by the reader, which fails this request
        with contextlib.suppress(ConnectionClosed):
            self._conn.send(msg)

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        request_id, replies = self._open()
        try:
            self._send({**msg, "id": request_id})
            return self._reply(replies, before_first_token=True)
        finally:
            self._forget(request_id)

    def _reply(
        self, replies: queue.SimpleQueue[Any], *, before_first_token: bool
    ) -> dict[str, Any]:
        reply = replies.get()
        if reply is _DIED:
            raise self._stopped(before_first_token=before_first_token)
        assert isinstance(reply, dict)
        if reply.get("op") == "error":
            message = str(reply.get("message", "the model runner failed"))
            if reply.get("kind") == "request":
                raise RequestError(message)
            raise InferenceError(message)
        return reply

    def _stopped(self, *, before_first_token: bool) -> RunnerStoppedError:
        return RunnerStoppedError(
            f"model runner for {self.name} stopped: {self.exit_reason}",
            before_first_token=before_first_token,
        )

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except ConnectionClosed:
                break
            with self._lock:
                replies = self._pending.get(msg.get("id", -1))
            if replies is not None:
                replies.put(msg)
        try:
            returncode = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # it closed the socket but lives on: end it
            self._kill()
            returncode = self.process.returncode
        with self._lock:
            self.exit_reason = describe_exit(returncode)
            pending, self._pending = self._pending, {}
        if not self._closing:
            log.error(
                "model runner for %s (pid %d) stopped: %s", self.name, self.pid, self.exit_reason
            )
            # The owner forgets this runner before its requests fail, so that a request made
            # right after the failure starts a new runner.
            if self.on_exit is not None:
                self.on_exit(self)
        for replies in pending.values():
            replies.put(_DIED)


def runner_pids(parent: int | None = None) -> list[int]:
    """Pids of the runner processes whose parent is ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                cmdline = cmd.read()
        except OSError:
            continue
        if int(fields[1]) == parent and b"modelkit.runtime.runner" in cmdline:
            found.append(int(entry))
    return found
