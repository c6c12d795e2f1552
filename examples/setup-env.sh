# Sourced by examples/quickstart.sh and .ci/run: pick the Python to use and install
# llama-cpp-python for this machine. Needs bash; changes the caller's environment (PATH).

# The interpreter: the active virtualenv when there is one, otherwise .venv in the checkout.
# Debian and Ubuntu ship only `python3`, and their system interpreter refuses `pip install`
# (PEP 668), so nothing is ever installed into it. Debian's venv module is the python3-venv
# package; as root we install it, otherwise we say so.
modelkit_use_python() {
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "${VIRTUAL_ENV}/bin/python" ]; then
        echo "== python: the active virtualenv ${VIRTUAL_ENV}"
        return
    fi
    if [ ! -x .venv/bin/python ]; then
        local python3
        python3=$(command -v python3 || command -v python || true)
        if [ -z "${python3}" ]; then
            echo "error: no python3 on PATH (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
            return 1
        fi
        if ! "${python3}" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                "${python3}" -m venv .venv
            else
                echo "error: '${python3} -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
                return 1
            fi
        fi
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
    echo "== python: ${VIRTUAL_ENV} (made from $(readlink -f .venv/bin/python))"
}

# llama-cpp-python compiled for this CPU, as a wheel kept in a folder keyed by its build flags
# (pip's own wheel cache ignores CMAKE_ARGS, so a wheel built with other flags would be reused).
#  - OpenMP off: with it, generation from a second Python thread runs ~2x slower
#    (../shared/README.md).
#  - No AMX kernels: on CPUs with AMX (Intel Sapphire Rapids and later: most current cloud x86
#    machines) llama.cpp's AMX buffer type crashes in ggml_backend_amx_mul_mat (llama.cpp#20824,
#    ollama#17249). -march=native would turn AMX on; explicit -mno-amx-* flags placed before it
#    win, so the build stays native (AVX-512, VNNI, BF16) and keeps the CPU_REPACK kernels.
#    The runtime still guards binaries built with AMX (modelkit/cpu.py; MODELKIT_AMX=1
#    turns it back on).
MODELKIT_LLAMA_CPP_VERSION=0.3.36

modelkit_install_llama_cpp() {
    local cmake_args="-DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF"
    if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
        local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        cmake_args="${cmake_args} -DCMAKE_C_FLAGS='${no_amx}' -DCMAKE_CXX_FLAGS='${no_amx}'"
    fi
    local key
    # the wheel is py3-none (ctypes): one per llama.cpp version, flags and machine
    key=$(printf '%s %s %s' "${MODELKIT_LLAMA_CPP_VERSION}" "${cmake_args}" "$(uname -m)" \
        | sha256sum | cut -c1-16)
    local wheels="${XDG_CACHE_HOME:-${HOME}/.cache}/modelkit/llama-cpp-wheels/${key}"
    if python -c "import llama_cpp" 2>/dev/null \
        && [ "$(cat "${VIRTUAL_ENV}/.modelkit-llama-cpp" 2>/dev/null)" = "${key}" ]; then
        return
    fi
    if ! ls "${wheels}"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "== building llama-cpp-python ${MODELKIT_LLAMA_CPP_VERSION} (${cmake_args}); ~12 min on 2 cores, once"
        mkdir -p "${wheels}.tmp"
        CMAKE_ARGS="${cmake_args}" python -m pip wheel -q --no-deps --no-cache-dir \
            -w "${wheels}.tmp" "llama-cpp-python==${MODELKIT_LLAMA_CPP_VERSION}"
        rm -rf "${wheels}" && mv "${wheels}.tmp" "${wheels}"
    fi
    python -m pip install -q --force-reinstall --no-deps "${wheels}"/llama_cpp_python-*.whl
    python -m pip install -q "llama-cpp-python==${MODELKIT_LLAMA_CPP_VERSION}"  # its dependencies
    echo "${key}" > "${VIRTUAL_ENV}/.modelkit-llama-cpp"
}
