"""How a child process ended, said as people say it (``signal 11 (SIGSEGV)``), for every
package that runs llama.cpp in a child: the build's quantizer and the runtime's runners."""

from __future__ import annotations

import signal

__all__ = ["describe_exit"]


def describe_exit(returncode: int | None) -> str:
    """``signal 11 (SIGSEGV)``, ``exit status 1``; None: the child only closed its end."""
    if returncode is None:
        return "closed its connection"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"signal {-returncode} ({name})"
    return f"exit status {returncode}"
