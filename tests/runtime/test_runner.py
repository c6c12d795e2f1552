"""Runner processes (modelkit.runtime.runner) on the tiny model: the protocol gives the same
answers as the engine in process, a client that leaves frees its slot, and a runner that dies —
a real segfault through ctypes, SIGKILL, its parent killed — is reported, reaped and gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from fixtures.server import process_running
from modelkit.errors import InferenceError
from modelkit.runtime import LoadedModel, load_params, resolve_options
from modelkit.runtime.runner import RunnerProcess, RunnerStoppedError, describe_exit
from modelkit.runtime.runner.child import CRASH_AFTER, CRASH_UNSAFE

GREEDY = {"temperature": 0, "num_predict": 12, "num_thread": 1}


def _load(**request: object) -> object:
    return load_params(resolve_options(None, {"num_thread": 1, **request}))


@pytest.fixture
def runner(tiny_gguf: Path) -> Iterator[RunnerProcess]:
    process = RunnerProcess("tiny", tiny_gguf, _load(num_ctx=256))  # type: ignore[arg-type]
    yield process
    process.close()


def _text(chunks: Iterator[object]) -> str:
    return "".join(c.text for c in chunks)  # type: ignore[attr-defined]


def test_answers_match_the_engine_in_process(runner: RunnerProcess, tiny_gguf: Path) -> None:
    opts = resolve_options(None, GREEDY)
    remote = list(runner.generate("hello there", opts))
    assert remote[-1].done and remote[-1].stats is not None
    assert remote[-1].stats.eval_count == 12
    local_model = LoadedModel(tiny_gguf, load=_load(num_ctx=256))  # type: ignore[arg-type]
    try:
        local = list(local_model.generate("hello there", opts))
    finally:
        local_model.close()
    assert _text(iter(remote)) == _text(iter(local))
    tokens = runner.tokenize("hello there")
    assert tokens and runner.detokenize(tokens).strip().endswith("hello there")
    assert runner.pid != os.getpid() and runner.pid == runner.process.pid
    assert runner.rss() > 0 and runner.kernels.startswith("cpu")
    health = runner.health()
    assert health["pid"] == runner.pid and health["busy"] == 0
    assert health["steps"] >= 12  # its batcher decoded the answer above, step by step


def test_logprobs_and_grammar_cross_the_wire(runner: RunnerProcess) -> None:
    opts = resolve_options(None, {**GREEDY, "num_predict": 4})
    chunks = list(runner.generate("hi", opts, top_logprobs=2, grammar='root ::= "yes" | "no"'))
    text = _text(iter(chunks))
    assert text in ("yes", "no")
    logprobs = [lp for c in chunks for lp in c.logprobs]
    assert logprobs and all(len(lp.top) == 2 and lp.chosen.logprob <= 0 for lp in logprobs)


def test_request_errors_come_back_as_request_errors(runner: RunnerProcess) -> None:
    from modelkit.errors import RequestError

    opts = resolve_options(None, GREEDY)
    with pytest.raises(RequestError):
        list(runner.generate("x" * 5000, opts, truncate=False))  # longer than num_ctx
    assert runner.alive  # one bad request leaves the runner serving
    assert _text(runner.generate("hello", opts))


def test_a_client_that_leaves_frees_its_slot(runner: RunnerProcess) -> None:
    """One slot: a stream closed after two chunks must not hold it."""
    long = resolve_options(None, {**GREEDY, "num_predict": 200})
    stream = runner.generate("hello", long)
    next(stream), next(stream)
    stream.close()
    done = threading.Event()

    def second() -> None:
        list(runner.generate("again", resolve_options(None, GREEDY)))
        done.set()

    threading.Thread(target=second, daemon=True).start()
    assert done.wait(30)


def test_a_segfault_fails_the_request_and_is_reaped(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CRASH_AFTER, "3")
    exits: list[RunnerProcess] = []
    runner = RunnerProcess("tiny", tiny_gguf, _load(num_ctx=256), on_exit=exits.append)  # type: ignore[arg-type]
    with pytest.raises(RunnerStoppedError) as err:
        list(runner.generate("hello", resolve_options(None, GREEDY)))
    assert str(err.value) == "model runner for tiny stopped: signal 11 (SIGSEGV)"
    assert not err.value.before_first_token  # two chunks came first
    assert exits == [runner] and not runner.alive
    assert runner.process.returncode == -signal.SIGSEGV  # waited for: no zombie
    with pytest.raises(RunnerStoppedError):
        runner.tokenize("after")  # a dead runner fails at once, it does not hang
    runner.close()


def test_sigkill_mid_generation(runner: RunnerProcess) -> None:
    stream = runner.generate("hello", resolve_options(None, {**GREEDY, "num_predict": 10_000}))
    next(stream)
    os.kill(runner.pid, signal.SIGKILL)
    with pytest.raises(RunnerStoppedError, match=r"signal 9 \(SIGKILL\)"):
        list(stream)


def test_crash_at_the_first_decode_unless_safe(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CRASH_UNSAFE, "1")
    runner = RunnerProcess("tiny", tiny_gguf, _load(num_ctx=256))  # type: ignore[arg-type]
    with pytest.raises(RunnerStoppedError) as err:
        list(runner.generate("hello", resolve_options(None, GREEDY)))
    assert err.value.before_first_token
    runner.close()
    from dataclasses import replace

    safe = replace(_load(num_ctx=256), safe_kernels=True)  # type: ignore[type-var]
    runner = RunnerProcess("tiny", tiny_gguf, safe)
    try:
        assert runner.kernels == "cpu"
        assert _text(runner.generate("hello", resolve_options(None, GREEDY)))
    finally:
        runner.close()


def test_a_model_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(InferenceError, match=r"failed to load model"):
        RunnerProcess("bad", bad, _load())  # type: ignore[arg-type]


def test_the_runner_goes_when_its_parent_is_killed(tiny_gguf: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from modelkit.runtime import load_params, resolve_options
        from modelkit.runtime.runner import RunnerProcess
        load = load_params(resolve_options(None, {{"num_thread": 1}}))
        r = RunnerProcess("tiny", {str(tiny_gguf)!r}, load)
        print(r.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while process_running(child):
        assert time.monotonic() < deadline, "the runner outlived its parent"
        time.sleep(0.05)


def test_describe_exit() -> None:
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(-6) == "signal 6 (SIGABRT)"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(None) == "closed its connection"
