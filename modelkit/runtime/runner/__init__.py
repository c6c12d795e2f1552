"""Runner processes: each loaded model lives in a child process of its own (``child``), which
the server drives over a small socket protocol (``protocol``) through ``client``.

The server process never loads llama.cpp: a native crash ends one runner, and its model's
requests fail with the runner's exit status while every other model carries on.
"""

from modelkit.runtime.runner.client import (
    RunnerProcess,
    RunnerStoppedError,
    describe_exit,
    runner_pids,
)

__all__ = ["RunnerProcess", "RunnerStoppedError", "describe_exit", "runner_pids"]
