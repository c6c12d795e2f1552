"""Which models are loaded, who may use them, and when they go (Ollama's scheduler, §10).

Independent of llama.cpp: a *loader* turns ``(key, spec)`` into a *runner* (anything with a
``size`` and ``close()``); the scheduler decides when to call it and when to close runners.

* :meth:`Scheduler.acquire` hands out a :class:`Lease` on the runner for ``key``, loaded with
  ``spec``. Up to ``num_parallel`` leases per runner are live at once; further requests wait
  until a slot frees (they are not rejected). :meth:`Scheduler.acquire_async` is the same for
  an event loop: a queued request waits on a future, holding no thread, so that hundreds of
  queued requests cannot starve a thread pool that the running ones need (a load runs in a
  worker thread). A missing runner is loaded — one load at a time —
  after evicting the least-recently-used idle runner when ``max_loaded`` are resident; a runner
  whose spec differs from the request's is reloaded once it is idle.
* A request that must wait while ``max_queue`` others already wait fails at once with
  :class:`QueueFullError` (HTTP 503).
* Keep-alive: when the last lease on a runner is released the runner stays loaded for the
  keep-alive of the most recent acquisition (``None`` → the default; ``0`` → unload now;
  negative or ``inf`` → forever), then a background reaper closes it.

Runners are closed outside the scheduler's lock, and a load waits until every closing runner
has closed, so memory is given back before more is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

import anyio.to_thread

__all__ = [
    "QUEUE_FULL_MESSAGE",
    "Lease",
    "QueueFullError",
    "Runner",
    "RunnerInfo",
    "Scheduler",
    "SchedulerClosedError",
]

log = logging.getLogger(__name__)

QUEUE_FULL_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class QueueFullError(Exception):
    """More requests are waiting than ``max_queue`` allows (Ollama's HTTP 503)."""

    status_code = 503

    def __init__(self, message: str = QUEUE_FULL_MESSAGE) -> None:
        super().__init__(message)


class SchedulerClosedError(RuntimeError):
    """The scheduler was shut down; no more runners are handed out."""


class Runner(Protocol):
    """What the scheduler needs of a loaded model."""

    @property
    def size(self) -> int:
        """Bytes of memory the runner holds (reported by :meth:`Scheduler.loaded`)."""
        ...

    def close(self) -> None: ...


K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
R = TypeVar("R", bound=Runner)


class _Entry(Generic[K, S, R]):
    """One resident (or loading) runner. Guarded by the scheduler's lock."""

    __slots__ = (
        "active",
        "expires_at",
        "keep_alive",
        "key",
        "last_used",
        "runner",
        "slots",
        "spec",
    )

    def __init__(self, key: K, spec: S, keep_alive: float, now: float, slots: int) -> None:
        self.key = key
        self.spec = spec
        self.runner: R | None = None  # None while loading
        self.slots = slots
        self.active = 0
        self.keep_alive = keep_alive
        self.expires_at: float | None = None  # set while idle; None while in use / loading
        self.last_used = now


@dataclass(frozen=True)
class RunnerInfo(Generic[K, S, R]):
    """A snapshot of one loaded runner (for ``/api/ps``).

    ``slots`` is how many leases the runner takes at once. ``expires_at`` is on the
    scheduler's clock (``time.monotonic`` by default): for an idle
    runner when it will be unloaded, for a busy one ``now + keep_alive`` (Ollama's estimate);
    ``math.inf`` means never. ``expires_in`` is the same as seconds from now.
    """

    key: K
    spec: S
    runner: R
    size: int
    active: int
    slots: int
    keep_alive: float
    expires_at: float
    expires_in: float


class Lease(Generic[K, S, R]):
    """The right to use one slot of a runner until :meth:`release` (or the ``with`` ends).

    Releasing is idempotent and safe from any thread; release early when the client goes
    away so that the slot frees at once.
    """

    def __init__(self, scheduler: Scheduler[K, S, R], entry: _Entry[K, S, R], runner: R) -> None:
        self._scheduler = scheduler
        self._entry = entry
        self.runner = runner
        self.key: K = entry.key
        self.spec: S = entry.spec
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        self._scheduler._release(self)

    def __enter__(self) -> Lease[K, S, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _normalize_keep_alive(value: float) -> float:
    return math.inf if value < 0 else float(value)


class Scheduler(Generic[K, S, R]):
    """Thread-safe loading, sharing, eviction and expiry of runners (see the module doc).

    ``loader(key, spec)`` is called without the scheduler's lock held and may take long;
    if it raises, the error goes to the request that triggered the load and nothing stays
    loaded. Specs are compared with ``==``. ``clock`` must be monotonic seconds; a fake clock
    works with :meth:`sweep` (the reaper also sweeps, on real time). ``slots_for(key, spec)``,
    if given, sets a runner's parallel slots (at most ``num_parallel``; at least 1) — for
    models Ollama runs one request at a time (embedding models, some architectures).
    """

    def __init__(
        self,
        loader: Callable[[K, S], R],
        *,
        max_loaded: int = 3,
        num_parallel: int = 1,
        max_queue: int = 512,
        default_keep_alive: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        slots_for: Callable[[K, S], int] | None = None,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        if num_parallel < 1:
            raise ValueError("num_parallel must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        self._loader = loader
        self.max_loaded = max_loaded
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.default_keep_alive = _normalize_keep_alive(default_keep_alive)
        self._clock = clock
        self._slots_for = slots_for
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[K, _Entry[K, S, R]] = {}
        self._loading = False  # a load is in progress (one at a time)
        self._closing = 0  # runners being closed outside the lock
        self._waiting = 0  # requests waiting in acquire / acquire_async
        self._waiting_for: dict[K, int] = {}  # the same, per key
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False
        self._reaper = threading.Thread(target=self._reap, name="modelkit-scheduler", daemon=True)
        self._reaper.start()

    # -- public API -------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """How many requests are blocked in :meth:`acquire` right now."""
        with self._cond:
            return self._waiting

    def waiting_by_key(self) -> dict[K, int]:
        """How many requests wait for each key right now (keys with none are left out)."""
        with self._cond:
            return dict(self._waiting_for)

    def acquire(self, key: K, spec: S, keep_alive: float | None = None) -> Lease[K, S, R]:
        """A lease on the runner for ``key`` loaded with ``spec``, loading it if need be.

        Blocks while all the runner's slots (``num_parallel``) are taken, while another load
        runs, or while an eviction victim is busy. ``keep_alive`` (seconds; ``None`` → the
        default, ``0`` → unload when idle, negative → forever) becomes the runner's
        keep-alive.

        Raises :class:`QueueFullError` at once if it would have to wait while ``max_queue``
        requests already wait, :class:`SchedulerClosedError` after :meth:`shutdown`, and
        whatever the loader raises.
        """
        duration = self._duration(keep_alive)
        queued = False
        with self._cond:
            try:
                while True:
                    self._expire_locked()
                    step = self._step_locked(key, spec, duration)
                    if isinstance(step, Lease):
                        return step
                    if isinstance(step, _LoadPlan):
                        self._cond.release()
                        try:
                            self._run_plan(step)
                        finally:
                            self._cond.acquire()
                        continue  # loaded (or failed by raising): look again
                    if not queued:
                        self._enqueue_locked(key)
                        queued = True
                    self._cond.wait()
            finally:
                if queued:
                    self._dequeue_locked(key)

    async def acquire_async(
        self, key: K, spec: S, keep_alive: float | None = None
    ) -> Lease[K, S, R]:
        """:meth:`acquire` for an event loop: waits on a future instead of blocking a thread,
        and runs a load (or the closing of the runners it replaces) in a worker thread.

        Cancelling the caller while it waits takes it out of the queue; a load it started
        finishes first and leaves its runner loaded for the next request.
        """
        duration = self._duration(keep_alive)
        loop = asyncio.get_running_loop()
        queued = False
        try:
            while True:
                waiter: asyncio.Future[None] | None = None
                with self._cond:
                    step = self._step_locked(key, spec, duration)
                    if step is None:
                        if not queued:
                            self._enqueue_locked(key)
                            queued = True
                        waiter = loop.create_future()
                        self._async_waiters.append((loop, waiter))
                if isinstance(step, Lease):
                    return step
                if isinstance(step, _LoadPlan):
                    # AnyIO's worker threads (the server's pool) are pruned when idle; a
                    # cancelled caller waits for the load, which then stays loaded.
                    await anyio.to_thread.run_sync(self._run_plan, step)
                    continue
                assert waiter is not None
                try:
                    await waiter
                finally:
                    with self._cond:
                        if (loop, waiter) in self._async_waiters:
                            self._async_waiters.remove((loop, waiter))
        finally:
            if queued:
                with self._cond:
                    self._dequeue_locked(key)

    def unload(self, key: K) -> bool:
        """Unload ``key``'s runner: at once if idle, else as soon as its last lease ends
        (Ollama's ``keep_alive: 0`` request). Returns whether a runner was loaded."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or entry.runner is None:
                return False
            entry.keep_alive = 0.0
            if entry.active == 0:
                self._close_locked([self._remove_locked(entry)])
            return True

    def discard(self, key: K, runner: R) -> None:
        """Forget ``runner`` (it died by itself): the next request for ``key`` loads anew.
        Leases on it stay valid until released; the runner is closed (reaped) here."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or entry.runner is not runner:
                return
            self._close_locked([self._remove_locked(entry)])

    def loaded(self) -> list[RunnerInfo[K, S, R]]:
        """The resident runners, most recently used first (expired ones are unloaded first)."""
        with self._cond:
            self._expire_locked()
            now = self._clock()
            infos: list[RunnerInfo[K, S, R]] = []
            for entry in sorted(self._entries.values(), key=lambda e: -e.last_used):
                if entry.runner is None:
                    continue
                if entry.expires_at is not None:
                    expires_at = entry.expires_at
                else:
                    expires_at = now + entry.keep_alive
                infos.append(
                    RunnerInfo(
                        key=entry.key,
                        spec=entry.spec,
                        runner=entry.runner,
                        size=entry.runner.size,
                        active=entry.active,
                        slots=entry.slots,
                        keep_alive=entry.keep_alive,
                        expires_at=expires_at,
                        expires_in=max(0.0, expires_at - now),
                    )
                )
            return infos

    def sweep(self) -> None:
        """Unload every idle runner whose keep-alive has run out, and wait for closes in
        progress to finish. The reaper thread does this on its own; tests with a fake clock
        call it after moving the clock."""
        with self._cond:
            self._expire_locked()
            while self._closing:
                self._cond.wait()

    def shutdown(self) -> None:
        """Close every runner (busy ones too), fail waiting and future requests, stop the
        reaper. Idempotent. A load in progress closes its runner when it finishes."""
        with self._cond:
            if not self._closed:
                self._closed = True
                loaded = [e for e in self._entries.values() if e.runner is not None]
                self._close_locked([self._remove_locked(e) for e in loaded])
            self._notify_locked()
            while self._closing:
                self._cond.wait()
        if self._reaper is not threading.current_thread():
            self._reaper.join()

    def __enter__(self) -> Scheduler[K, S, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- internals (all *_locked methods run with self._cond held) -------------------------

    def _try_grant(self, key: K, spec: S, duration: float) -> Lease[K, S, R] | None:
        entry = self._entries.get(key)
        if entry is None or entry.runner is None or entry.spec != spec:
            return None
        if entry.active >= entry.slots:
            return None
        entry.active += 1
        entry.keep_alive = duration
        entry.expires_at = None
        entry.last_used = self._clock()
        return Lease(self, entry, entry.runner)

    def _duration(self, keep_alive: float | None) -> float:
        return _normalize_keep_alive(self.default_keep_alive if keep_alive is None else keep_alive)

    def _enqueue_locked(self, key: K) -> None:
        if self._waiting >= self.max_queue:
            raise QueueFullError()
        self._waiting += 1
        self._waiting_for[key] = self._waiting_for.get(key, 0) + 1

    def _dequeue_locked(self, key: K) -> None:
        self._waiting -= 1
        left = self._waiting_for.pop(key, 0) - 1
        if left > 0:
            self._waiting_for[key] = left

    def _step_locked(
        self, key: K, spec: S, duration: float
    ) -> Lease[K, S, R] | _LoadPlan[K, S, R] | None:
        """A lease now, a load to run (already reserved), or None: wait for a change."""
        if self._closed:
            raise SchedulerClosedError("scheduler is shut down")
        lease = self._try_grant(key, spec, duration)
        if lease is not None:
            return lease
        return self._plan_load_locked(key, spec, duration)

    def _plan_load_locked(self, key: K, spec: S, duration: float) -> _LoadPlan[K, S, R] | None:
        """Reserve a load of ``key`` if nothing stands in the way; None when the caller must
        wait. The victims leave the table now and are closed by :meth:`_run_plan`."""
        if self._loading or self._closing:
            return None
        current = self._entries.get(key)
        if current is not None:
            if current.runner is None or current.spec == spec:
                return None  # loading, or loaded with this spec and all slots busy
            if current.active:
                return None  # reload once the old runner is idle
        victims: list[_Entry[K, S, R]] = []
        if current is not None:
            victims.append(current)
        resident = len(self._entries) - len(victims)
        if resident >= self.max_loaded:
            idle = [e for e in self._entries.values() if e.active == 0 and e.runner is not None]
            idle = [e for e in idle if e is not current]
            if not idle:
                return None  # wait for a runner to go idle
            victims.append(min(idle, key=lambda e: e.last_used))

        slots = self.num_parallel
        if self._slots_for is not None:
            slots = max(1, min(slots, self._slots_for(key, spec)))
        closing = [self._remove_locked(v) for v in victims]
        self._closing += len(closing)
        self._loading = True
        placeholder: _Entry[K, S, R] = _Entry(key, spec, duration, self._clock(), slots)
        self._entries[key] = placeholder
        return _LoadPlan(placeholder, closing)

    def _run_plan(self, plan: _LoadPlan[K, S, R]) -> None:
        """Close the plan's victims, then load (memory is given back before more is taken).
        Runs without the lock; the loader's error goes to the caller."""
        placeholder = plan.placeholder
        try:
            self._close_runners(plan.victims)
            with self._cond:
                if self._closed:
                    raise SchedulerClosedError("scheduler is shut down")
            runner = self._loader(placeholder.key, placeholder.spec)
        except BaseException:
            with self._cond:
                if self._entries.get(placeholder.key) is placeholder:
                    del self._entries[placeholder.key]
                self._loading = False
                self._notify_locked()
            raise
        with self._cond:
            self._loading = False
            self._notify_locked()
            if not self._closed and self._entries.get(placeholder.key) is placeholder:
                placeholder.runner = runner
                placeholder.last_used = self._clock()
                return
            if self._entries.get(placeholder.key) is placeholder:
                del self._entries[placeholder.key]
            self._closing += 1
        self._close_runners([runner])
        raise SchedulerClosedError("scheduler is shut down")

    def _close_runners(self, runners: list[R]) -> None:
        """Close ``runners`` (out of the table, counted in ``_closing``) without the lock."""
        if not runners:
            return
        try:
            for runner in runners:
                try:
                    runner.close()
                except Exception:  # a runner that fails to close is gone all the same
                    log.exception("closing a runner failed")
        finally:
            with self._cond:
                self._closing -= len(runners)
                self._notify_locked()

    def _notify_locked(self) -> None:
        """Wake every waiter, threads and futures alike, to look again."""
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            # a closed loop has nobody waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, waiter)

    def _release(self, lease: Lease[K, S, R]) -> None:
        with self._cond:
            if lease._released:
                return
            lease._released = True
            entry = lease._entry
            if self._entries.get(entry.key) is not entry:
                return  # already unloaded (shutdown)
            entry.active -= 1
            entry.last_used = self._clock()
            if entry.active == 0:
                if entry.keep_alive <= 0:
                    self._close_locked([self._remove_locked(entry)])
                elif math.isinf(entry.keep_alive):
                    entry.expires_at = math.inf
                else:
                    entry.expires_at = entry.last_used + entry.keep_alive
            self._notify_locked()

    def _remove_locked(self, entry: _Entry[K, S, R]) -> R:
        del self._entries[entry.key]
        assert entry.runner is not None
        return entry.runner

    def _expire_locked(self) -> None:
        now = self._clock()
        expired = [
            e
            for e in self._entries.values()
            if e.active == 0 and e.expires_at is not None and e.expires_at <= now
        ]
        if expired:
            self._close_locked([self._remove_locked(e) for e in expired])

    def _close_locked(self, runners: list[R]) -> None:
        """Close ``runners`` (already out of the table) with the lock released meanwhile."""
        if not runners:
            return
        self._closing += len(runners)
        self._cond.release()
        try:
            self._close_runners(runners)
        finally:
            self._cond.acquire()

    def _next_expiry_locked(self) -> float | None:
        times = [
            e.expires_at
            for e in self._entries.values()
            if e.active == 0 and e.expires_at is not None and not math.isinf(e.expires_at)
        ]
        return min(times) if times else None

    def _reap(self) -> None:
        with self._cond:
            while not self._closed:
                self._expire_locked()
                if self._closed:
                    break
                deadline = self._next_expiry_locked()
                if deadline is None:
                    self._cond.wait()
                else:
                    # capped so that a clock other than real time is still looked at
                    self._cond.wait(min(max(deadline - self._clock(), 0.001), 1.0))


@dataclass(frozen=True)
class _LoadPlan(Generic[K, S, R]):
    """A load reserved under the lock: the placeholder entry, and the runners to close
    first."""

    placeholder: _Entry[K, S, R]
    victims: list[R]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
