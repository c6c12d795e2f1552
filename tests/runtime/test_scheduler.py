"""modelkit.runtime.scheduler with a fake loader (no llama.cpp): loading, slots, eviction,
keep-alive, the queue limit, reloads, unload and shutdown (reference §10)."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelkit.runtime.scheduler import (
    QUEUE_FULL_MESSAGE,
    Lease,
    QueueFullError,
    Scheduler,
    SchedulerClosedError,
)

WAIT = 5.0  # generous upper bound for things that should happen almost at once


class FakeRunner:
    def __init__(self, key: str, spec: Any, size: int) -> None:
        self.key = key
        self.spec = spec
        self._size = size
        self.closed = threading.Event()
        self.close_calls = 0

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


class FakeLoader:
    """Records loads; can block (``gate``) or fail; checks the scheduler's invariants."""

    def __init__(self, max_live: int | None = None) -> None:
        self.lock = threading.Lock()
        self.runners: list[FakeRunner] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail: Exception | None = None
        self.max_live = max_live
        self.loading = 0
        self.max_concurrent_loads = 0

    def __call__(self, key: str, spec: Any) -> FakeRunner:
        with self.lock:
            self.loading += 1
            self.max_concurrent_loads = max(self.max_concurrent_loads, self.loading)
            if self.max_live is not None:
                assert len(self.live()) < self.max_live, "loaded before evicting"
        self.started.set()
        try:
            if self.gate is not None:
                assert self.gate.wait(WAIT)
            if self.fail is not None:
                raise self.fail
            runner = FakeRunner(key, spec, size=100 + len(self.runners))
            with self.lock:
                self.runners.append(runner)
            return runner
        finally:
            with self.lock:
                self.loading -= 1

    def live(self) -> list[FakeRunner]:
        return [r for r in self.runners if not r.closed.is_set()]

    def loads(self, key: str) -> list[FakeRunner]:
        return [r for r in self.runners if r.key == key]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Sched = Scheduler[str, Any, FakeRunner]


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[Sched, FakeLoader]]]:
    made: list[Sched] = []

    def factory(
        loader: Callable[[str, Any], FakeRunner] | None = None, **kwargs: Any
    ) -> tuple[Sched, FakeLoader]:
        fake = loader if isinstance(loader, FakeLoader) else FakeLoader()
        sched: Sched = Scheduler(loader or fake, **kwargs)
        made.append(sched)
        return sched, fake

    yield factory
    for sched in made:
        sched.shutdown()


def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


class Acquirer(threading.Thread):
    """``sched.acquire(...)`` in a thread; keeps the lease (or the error)."""

    def __init__(
        self,
        sched: Sched,
        key: str,
        spec: Any = 1,
        keep_alive: float | None = None,
        *,
        hold: bool = True,
    ):
        super().__init__(daemon=True)
        self.sched, self.key, self.spec, self.keep_alive = sched, key, spec, keep_alive
        self.hold = hold
        self.lease: Lease[str, Any, FakeRunner] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.lease = self.sched.acquire(self.key, self.spec, self.keep_alive)
            if not self.hold:
                self.lease.release()
        except BaseException as err:
            self.error = err
        finally:
            self.done.set()


def keys_loaded(sched: Sched) -> set[str]:
    return {info.key for info in sched.loaded()}


# -- loading and reuse -------------------------------------------------------------------------


def test_acquire_loads_once_and_reuses(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make()
    with sched.acquire("a", {"num_ctx": 2048}) as lease:
        assert lease.key == "a"
        assert lease.spec == {"num_ctx": 2048}
        first = lease.runner
        assert not lease.released
    assert lease.released
    with sched.acquire("a", {"num_ctx": 2048}) as again:
        assert again.runner is first
    assert len(loader.runners) == 1
    assert not first.closed.is_set()


def test_constructor_validates(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    for kwargs in ({"max_loaded": 0}, {"num_parallel": 0}, {"max_queue": -1}):
        with pytest.raises(ValueError):
            make(**kwargs)


def test_loader_error_propagates_and_nothing_stays(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, loader = make()
    loader.fail = RuntimeError("bad gguf")
    with pytest.raises(RuntimeError, match="bad gguf"):
        sched.acquire("a", 1)
    assert sched.loaded() == []
    loader.fail = None
    with sched.acquire("a", 1) as lease:
        assert lease.runner.key == "a"


def test_one_load_at_a_time(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make(max_loaded=3)
    loader.gate = threading.Event()
    threads = [Acquirer(sched, key) for key in ("a", "b", "c")]
    for t in threads:
        t.start()
    until(lambda: loader.started.is_set() and sched.waiting == 2)
    loader.gate.set()
    for t in threads:
        assert t.done.wait(WAIT)
        assert t.error is None and t.lease is not None
        t.lease.release()
    assert loader.max_concurrent_loads == 1
    assert keys_loaded(sched) == {"a", "b", "c"}


def test_waiters_for_a_loading_model_share_the_load(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, loader = make(num_parallel=4)
    loader.gate = threading.Event()
    threads = [Acquirer(sched, "a") for _ in range(4)]
    for t in threads:
        t.start()
    until(lambda: loader.started.is_set() and sched.waiting == 3)
    loader.gate.set()
    for t in threads:
        assert t.done.wait(WAIT)
        assert t.lease is not None
    assert len(loader.runners) == 1
    assert {id(t.lease.runner) for t in threads if t.lease} == {id(loader.runners[0])}


# -- eviction ------------------------------------------------------------------------------


def test_lru_eviction(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    clock = FakeClock()
    sched, loader = make(FakeLoader(max_live=2), max_loaded=2, clock=clock)
    for key in ("a", "b"):
        with sched.acquire(key, 1):
            clock.advance(1)
    with sched.acquire("a", 1):  # a is now more recently used than b
        clock.advance(1)
    with sched.acquire("c", 1):
        pass
    assert keys_loaded(sched) == {"a", "c"}
    (b,) = loader.loads("b")
    assert b.closed.is_set()
    assert not loader.loads("a")[0].closed.is_set()


def test_eviction_skips_busy_runners(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    clock = FakeClock()
    sched, loader = make(FakeLoader(max_live=2), max_loaded=2, clock=clock)
    held = sched.acquire("a", 1)  # least recently used, but busy
    clock.advance(1)
    with sched.acquire("b", 1):
        pass
    with sched.acquire("c", 1):
        pass
    assert keys_loaded(sched) == {"a", "c"}
    assert loader.loads("b")[0].closed.is_set()
    held.release()


def test_eviction_waits_for_a_busy_runner(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make(FakeLoader(max_live=1), max_loaded=1)
    held = sched.acquire("a", 1)
    t = Acquirer(sched, "b")
    t.start()
    until(lambda: sched.waiting == 1)
    assert not t.done.is_set()
    held.release()
    assert t.done.wait(WAIT)
    assert t.error is None and t.lease is not None
    assert loader.loads("a")[0].closed.is_set()
    assert keys_loaded(sched) == {"b"}
    t.lease.release()


# -- keep-alive ------------------------------------------------------------------------------


def test_keep_alive_zero_unloads_on_release(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make()
    lease = sched.acquire("a", 1, keep_alive=0)
    assert keys_loaded(sched) == {"a"}
    lease.release()
    assert loader.runners[0].closed.is_set()
    assert sched.loaded() == []


def test_keep_alive_negative_is_forever(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    clock = FakeClock()
    sched, loader = make(clock=clock)
    with sched.acquire("a", 1, keep_alive=-1):
        pass
    clock.advance(1e12)
    sched.sweep()
    (info,) = sched.loaded()
    assert info.expires_at == math.inf
    assert info.expires_in == math.inf
    assert info.keep_alive == math.inf
    assert not loader.runners[0].closed.is_set()


def test_keep_alive_positive_expires(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    clock = FakeClock()
    sched, loader = make(clock=clock)
    with sched.acquire("a", 1, keep_alive=10):
        clock.advance(100)  # time in use does not count
    (info,) = sched.loaded()
    assert info.expires_at == clock.now + 10
    assert info.expires_in == 10
    assert info.active == 0
    clock.advance(9.5)
    sched.sweep()
    assert keys_loaded(sched) == {"a"}
    clock.advance(0.5)
    sched.sweep()
    assert loader.runners[0].closed.is_set()
    assert sched.loaded() == []


def test_default_keep_alive(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    clock = FakeClock()
    sched, loader = make(clock=clock, default_keep_alive=300)
    with sched.acquire("a", 1):
        pass
    (info,) = sched.loaded()
    assert (info.keep_alive, info.expires_in) == (300, 300)
    clock.advance(301)
    assert sched.loaded() == []  # loaded() sweeps first
    assert loader.runners[0].closed.is_set()


def test_default_keep_alive_negative_is_forever(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, _ = make(default_keep_alive=-1)
    assert sched.default_keep_alive == math.inf


def test_new_use_stops_the_timer_and_last_keep_alive_wins(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    clock = FakeClock()
    sched, loader = make(clock=clock)
    with sched.acquire("a", 1, keep_alive=5):
        pass
    clock.advance(4)
    lease = sched.acquire("a", 1, keep_alive=60)
    clock.advance(10)
    sched.sweep()
    (info,) = sched.loaded()
    assert info.active == 1
    assert info.expires_at == clock.now + 60  # estimate while busy
    lease.release()
    clock.advance(59)
    sched.sweep()
    assert keys_loaded(sched) == {"a"}
    clock.advance(1)
    sched.sweep()
    assert loader.runners[0].closed.is_set()


def test_reaper_unloads_on_real_time(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make()
    with sched.acquire("a", 1, keep_alive=0.05):
        pass
    start = time.monotonic()
    assert loader.runners[0].closed.wait(WAIT)  # nobody calls sweep(): the reaper does
    assert time.monotonic() - start >= 0.04
    until(lambda: sched.loaded() == [])


# -- slots -------------------------------------------------------------------------------------


def test_parallel_slots_block_then_proceed(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make(num_parallel=2)
    first = sched.acquire("a", 1)
    second = sched.acquire("a", 1)
    assert first.runner is second.runner
    third = Acquirer(sched, "a")
    third.start()
    until(lambda: sched.waiting == 1)
    assert not third.done.wait(0.05)
    (info,) = sched.loaded()
    assert info.active == 2
    first.release()
    assert third.done.wait(WAIT)
    assert third.lease is not None and third.lease.runner is second.runner
    assert len(loader.runners) == 1
    second.release()
    third.lease.release()
    assert sched.loaded()[0].active == 0


def test_slots_for_limits_a_model(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=4, slots_for=lambda key, spec: 1 if key == "embed" else 99)
    chat = [sched.acquire("chat", 1) for _ in range(4)]  # capped at num_parallel
    first = sched.acquire("embed", 1)
    waiter = Acquirer(sched, "embed")
    waiter.start()
    until(lambda: sched.waiting == 1)
    slots = {info.key: info.slots for info in sched.loaded()}
    assert slots == {"chat": 4, "embed": 1}
    first.release()
    assert waiter.done.wait(WAIT)
    assert waiter.lease is not None
    waiter.lease.release()
    for lease in chat:
        lease.release()


def test_early_release_frees_the_slot_once(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=1)
    lease = sched.acquire("a", 1)
    waiter = Acquirer(sched, "a")
    waiter.start()
    until(lambda: sched.waiting == 1)
    lease.release()  # e.g. the client went away mid-stream
    lease.release()  # idempotent: must not free a second slot
    assert waiter.done.wait(WAIT)
    assert sched.loaded()[0].active == 1
    other = Acquirer(sched, "a")
    other.start()
    until(lambda: sched.waiting == 1)
    assert not other.done.is_set()
    assert waiter.lease is not None
    waiter.lease.release()
    assert other.done.wait(WAIT)
    assert other.lease is not None
    other.lease.release()


def test_lease_released_when_the_with_block_raises(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, _ = make()
    with pytest.raises(KeyError), sched.acquire("a", 1):
        raise KeyError("boom")
    assert sched.loaded()[0].active == 0


# -- the queue limit ---------------------------------------------------------------------------


def test_queue_full_is_raised_at_once(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=1, max_queue=2)
    held = sched.acquire("a", 1)
    waiters = [Acquirer(sched, "a", hold=False) for _ in range(2)]
    for w in waiters:
        w.start()
    until(lambda: sched.waiting == 2)
    start = time.monotonic()
    with pytest.raises(QueueFullError) as info:
        sched.acquire("a", 1)
    assert time.monotonic() - start < 1.0
    assert str(info.value) == QUEUE_FULL_MESSAGE
    assert str(info.value) == ("server busy, please try again.  maximum pending requests exceeded")
    assert info.value.status_code == 503
    # a request that needs no waiting is still served: another model loads at once
    with sched.acquire("b", 1) as lease:
        assert lease.key == "b"
    held.release()
    for w in waiters:
        assert w.done.wait(WAIT)
        assert w.error is None and w.lease is not None and w.lease.released
    assert sched.waiting == 0


def test_queue_zero_rejects_any_wait(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=1, max_queue=0)
    with sched.acquire("a", 1), pytest.raises(QueueFullError):  # the first needs no wait
        sched.acquire("a", 1)
    with sched.acquire("a", 1):
        pass


# -- reloads ---------------------------------------------------------------------------------


def test_reload_on_spec_change(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make(FakeLoader(max_live=1), max_loaded=1)
    with sched.acquire("a", {"num_ctx": 2048}) as lease:
        old = lease.runner
    with sched.acquire("a", {"num_ctx": 8192}) as lease:
        new = lease.runner
        assert new.spec == {"num_ctx": 8192}
    assert old is not new
    assert old.closed.is_set()
    (info,) = sched.loaded()
    assert info.spec == {"num_ctx": 8192}
    with sched.acquire("a", {"num_ctx": 8192}) as lease:
        assert lease.runner is new
    assert len(loader.runners) == 2


def test_reload_waits_until_the_old_runner_is_idle(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, loader = make(num_parallel=2)
    held = sched.acquire("a", 1)
    t = Acquirer(sched, "a", spec=2)
    t.start()
    until(lambda: sched.waiting == 1)
    assert not held.runner.closed.is_set()
    held.release()
    assert t.done.wait(WAIT)
    assert t.lease is not None and t.lease.runner.spec == 2
    assert held.runner.closed.is_set()
    t.lease.release()
    assert len(loader.runners) == 2


# -- unload and shutdown -----------------------------------------------------------------------


def test_unload(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make()
    assert sched.unload("nope") is False
    with sched.acquire("a", 1, keep_alive=-1):
        pass
    assert sched.unload("a") is True
    assert loader.runners[0].closed.is_set()
    assert sched.loaded() == []

    lease = sched.acquire("b", 1, keep_alive=-1)
    assert sched.unload("b") is True  # busy: goes when the lease ends
    assert not lease.runner.closed.is_set()
    assert keys_loaded(sched) == {"b"}
    lease.release()
    assert lease.runner.closed.is_set()
    assert sched.loaded() == []


def test_shutdown_closes_everything(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, loader = make(max_loaded=3, num_parallel=1)
    for key in ("a", "b"):
        with sched.acquire(key, 1, keep_alive=-1):
            pass
    busy = sched.acquire("c", 1)
    waiter = Acquirer(sched, "c")
    waiter.start()
    until(lambda: sched.waiting == 1)
    sched.shutdown()
    assert all(r.closed.is_set() for r in loader.runners)
    assert len(loader.runners) == 3
    assert waiter.done.wait(WAIT)
    assert isinstance(waiter.error, SchedulerClosedError)
    with pytest.raises(SchedulerClosedError):
        sched.acquire("a", 1)
    busy.release()  # harmless after shutdown
    sched.shutdown()  # idempotent
    assert all(r.close_calls == 1 for r in loader.runners)
    assert sched.loaded() == []


def test_shutdown_during_a_load_closes_the_new_runner(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, loader = make()
    loader.gate = threading.Event()
    t = Acquirer(sched, "a")
    t.start()
    assert loader.started.wait(WAIT)
    sched.shutdown()
    loader.gate.set()
    assert t.done.wait(WAIT)
    assert isinstance(t.error, SchedulerClosedError)
    assert loader.runners[0].closed.is_set()
    assert sched.loaded() == []


def test_context_manager_shuts_down() -> None:
    loader = FakeLoader()
    with Scheduler(loader) as sched, sched.acquire("a", 1):
        pass
    assert loader.runners[0].closed.is_set()


def test_close_errors_do_not_wedge_the_scheduler(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    class Exploding(FakeRunner):
        def close(self) -> None:
            super().close()
            raise OSError("close failed")

    sched: Sched = make(lambda key, spec: Exploding(key, spec, 1))[0]
    with sched.acquire("a", 1, keep_alive=0):
        pass
    assert sched.loaded() == []
    with sched.acquire("a", 1) as lease:
        assert lease.runner.key == "a"


# -- stress ------------------------------------------------------------------------------------


def test_concurrency_stress(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    max_loaded, num_parallel = 2, 2
    loader = FakeLoader(max_live=max_loaded)
    sched, _ = make(loader, max_loaded=max_loaded, num_parallel=num_parallel, max_queue=64)
    in_use: dict[int, int] = {}
    guard = threading.Lock()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(20):
                key = rng.choice("abc")
                spec = rng.choice((1, 1, 1, 2))
                keep = rng.choice((None, 0, 0.001, -1))
                with sched.acquire(key, spec, keep) as lease:
                    runner = lease.runner
                    assert not runner.closed.is_set()
                    assert (runner.key, runner.spec) == (key, spec)
                    with guard:
                        in_use[id(runner)] = in_use.get(id(runner), 0) + 1
                        assert in_use[id(runner)] <= num_parallel
                        assert len(loader.live()) <= max_loaded
                    time.sleep(rng.random() * 0.001)
                    with guard:
                        in_use[id(runner)] -= 1
                    assert not runner.closed.is_set()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert errors == []
    assert sched.waiting == 0
    assert loader.max_concurrent_loads == 1
    assert all(info.active == 0 for info in sched.loaded())
    assert len(sched.loaded()) <= max_loaded
    sched.shutdown()
    assert all(r.closed.is_set() and r.close_calls == 1 for r in loader.runners)


# -- acquire_async: queued requests wait on futures, not threads -------------------------------


def test_async_waiters_hold_no_threads(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    """Hundreds of queued requests on one slot: no thread per waiter, each gets the slot in
    turn, and the queue count goes back to zero."""
    sched, fake = make(num_parallel=1, max_queue=500)
    order: list[int] = []

    async def main() -> tuple[int, int]:
        first = await sched.acquire_async("a", 1)
        baseline = threading.active_count()

        async def one(i: int) -> None:
            lease = await sched.acquire_async("a", 1)
            order.append(i)
            await asyncio.sleep(0)
            lease.release()

        tasks = [asyncio.create_task(one(i)) for i in range(300)]
        while sched.waiting < 300:
            await asyncio.sleep(0.001)
        threads_while_queued = threading.active_count()
        first.release()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        return baseline, threads_while_queued

    baseline, queued = asyncio.run(main())
    assert queued == baseline  # 300 waiters, not one thread among them
    assert sorted(order) == list(range(300))
    assert sched.waiting == 0
    assert len(fake.runners) == 1


def test_async_queue_full_and_cancel(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=1, max_queue=2)

    async def main() -> None:
        held = await sched.acquire_async("a", 1)
        waiters = [asyncio.create_task(sched.acquire_async("a", 1)) for _ in range(2)]
        while sched.waiting < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFullError):
            await sched.acquire_async("a", 1)
        waiters[0].cancel()  # a client that goes away leaves the queue
        with pytest.raises(asyncio.CancelledError):
            await waiters[0]
        assert sched.waiting == 1
        held.release()
        lease = await asyncio.wait_for(waiters[1], WAIT)
        lease.release()
        assert sched.waiting == 0

    asyncio.run(main())


def test_async_load_runs_in_a_thread_and_is_shared(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    """A slow load does not block the event loop; requests that arrive meanwhile wait for
    it instead of loading again; a sync acquirer shares the same runner."""
    fake = FakeLoader()
    fake.gate = threading.Event()
    sched, _ = make(fake, num_parallel=4)

    async def main() -> None:
        loads = [asyncio.create_task(sched.acquire_async("a", 1)) for _ in range(3)]
        while not fake.started.is_set():
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(20):  # the loop keeps turning while the loader blocks
            await asyncio.sleep(0.001)
            ticks += 1
        assert ticks == 20 and not any(t.done() for t in loads)
        fake.gate.set()
        leases = await asyncio.wait_for(asyncio.gather(*loads), WAIT)
        assert {lease.runner for lease in leases} == {fake.runners[0]}
        for lease in leases:
            lease.release()

    asyncio.run(main())
    with sched.acquire("a", 1) as lease:
        assert lease.runner is fake.runners[0]
    assert len(fake.runners) == 1


def test_async_loader_error_reaches_the_request(
    make: Callable[..., tuple[Sched, FakeLoader]],
) -> None:
    sched, fake = make()
    fake.fail = RuntimeError("bad weights")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="bad weights"):
            await sched.acquire_async("a", 1)

    asyncio.run(main())
    assert sched.loaded() == []
    fake.fail = None
    with sched.acquire("a", 1):
        pass


def test_async_waiters_fail_on_shutdown(make: Callable[..., tuple[Sched, FakeLoader]]) -> None:
    sched, _ = make(num_parallel=1)

    async def main() -> None:
        await sched.acquire_async("a", 1)
        waiter = asyncio.create_task(sched.acquire_async("a", 1))
        while sched.waiting < 1:
            await asyncio.sleep(0.001)
        await asyncio.to_thread(sched.shutdown)
        with pytest.raises(SchedulerClosedError):
            await asyncio.wait_for(waiter, WAIT)

    asyncio.run(main())
