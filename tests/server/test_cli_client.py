"""``modelkit run``/``ps``/``stop`` as a user runs them: the installed executable talking to a
real server over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from fixtures.server import RunningServer


def modelkit(
    server: RunningServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": server.url}
    exe = shutil.which("modelkit")
    cmd = [exe] if exe else [sys.executable, "-m", "modelkit"]
    return subprocess.run(
        [*cmd, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_run_one_shot_prompt_and_verbose_stats(server: RunningServer) -> None:
    done = modelkit(server, "run", "tiny", "hello", "--verbose")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # the tiny model says something
    assert "eval count:" in done.stderr and "total duration:" in done.stderr


def test_run_reads_stdin(server: RunningServer) -> None:
    done = modelkit(server, "run", "tiny", stdin="some piped text")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_ps_and_stop(server: RunningServer) -> None:
    # (The interactive session needs a terminal; its logic is tested in tests/cli/test_repl.py.)
    load = modelkit(server, "run", "tiny", "x", "--keepalive", "5m")
    assert load.returncode == 0, load.stderr
    ps = modelkit(server, "ps")
    assert ps.returncode == 0 and "tiny:latest" in ps.stdout and "100% CPU" in ps.stdout
    stop = modelkit(server, "stop", "tiny")
    assert stop.returncode == 0, stop.stderr
    assert "tiny:latest" not in modelkit(server, "ps").stdout
    missing = modelkit(server, "stop", "tiny")
    assert missing.returncode == 1 and 'couldn\'t find model "tiny" to stop' in missing.stderr


def test_errors_are_messages_not_tracebacks(server: RunningServer) -> None:
    missing = modelkit(server, "run", "nope", "hi")
    assert missing.returncode == 1 and "model 'nope' not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unreachable_server(tmp_path: object) -> None:
    env = {**os.environ, "OLLAMA_HOST": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "modelkit", "ps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1 and "could not connect" in done.stderr
