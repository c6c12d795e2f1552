"""``python -m modelkit.build.quantize_child SRC DST LLAMA_FTYPE_NAME NTHREAD``: one llama.cpp
quantization in a process of its own, so that a native crash ends only this process."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

FAULT_SETTING = "MODELKIT_QUANTIZE_FAULT"  # tests only: ``segv`` or ``exit`` (quantize.py)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGKILL this process when the build that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _inject_fault(dst: str) -> None:
    fault = os.environ.get(FAULT_SETTING, "")
    if fault == "segv":
        with open(dst, "wb") as out:  # a half-written output, as a real crash leaves it
            out.write(b"GGUF" + bytes(4096))
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "exit":
        print("injected failure", file=sys.stderr)
        sys.exit(3)


def quantize(src: str, dst: str, ftype_name: str, nthread: int) -> int:
    """llama.cpp's ``llama_model_quantize``; its return code (0: done)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = nthread
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst, ftype_name, nthread = argv
    _die_with_parent()
    _inject_fault(dst)
    code = quantize(src, dst, ftype_name, int(nthread))
    if code != 0:
        print(f"llama_model_quantize returned {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
