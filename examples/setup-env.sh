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
    local cmake_args="-DGGML_OPENMP=OFF -DLLAVA_BUILD=ON"
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

# llama-cpp-python for container images (`modelkit runtime-image`): a wheel that runs on other
# x86-64 machines than this one, kept like the native one in a folder keyed by a hash of
# version, flags and machine: ~/.cache/modelkit/llama-cpp-portable-wheels/<key>/, with a
# llama-cpp-build.txt naming the build (the image's io.modelkit.llama-cpp.build label).
# Copies the wheel and that file into DIR.
#  MODELKIT_LLAMA_PORTABLE=x86-64-v3 (default): -DGGML_NATIVE=OFF with an explicit baseline
#    (AVX, AVX2, FMA, F16C, BMI2: Haswell/Zen 1 and later; no AVX-512, no AMX). ~10-14 min.
#  MODELKIT_LLAMA_PORTABLE=cpu-variants: llama.cpp's runtime CPU dispatch (GGML_BACKEND_DL +
#    GGML_CPU_ALL_VARIANTS: one libggml-cpu-<variant>.so per CPU generation, the best one
#    loaded at start-up). ~17 min. llama-cpp-python 0.3.36 installs the variants outside
#    llama_cpp/lib and never calls ggml_backend_load_all(), so a model load then fails with
#    "no backends are loaded": the check below refuses such a wheel.
# OpenMP off as for the native build; pip's wheel cache ignores CMAKE_ARGS, hence
# --no-cache-dir and our own cache.
modelkit_portable_llama_wheel() {
    local dest=${1:?usage: modelkit_portable_llama_wheel DIR}
    local arch label cmake_args="-DGGML_OPENMP=OFF -DLLAVA_BUILD=ON -DGGML_NATIVE=OFF"
    arch=$(uname -m)
    case "${MODELKIT_LLAMA_PORTABLE:-x86-64-v3}" in
        x86-64-v3)
            if [ "${arch}" = x86_64 ]; then
                cmake_args="${cmake_args} -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON"
                cmake_args="${cmake_args} -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
                cmake_args="${cmake_args} -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"
                label=x86-64-v3
            else
                label="${arch} generic (GGML_NATIVE=OFF)"
            fi
            ;;
        cpu-variants)
            cmake_args="${cmake_args} -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
            label="cpu-variants (dynamic dispatch)"
            ;;
        *)
            echo "error: MODELKIT_LLAMA_PORTABLE is x86-64-v3 or cpu-variants, not '${MODELKIT_LLAMA_PORTABLE}'" >&2
            return 1
            ;;
    esac
    local key
    key=$(printf '%s %s %s' "${MODELKIT_LLAMA_CPP_VERSION}" "${cmake_args}" "${arch}" \
        | sha256sum | cut -c1-16)
    local wheels="${XDG_CACHE_HOME:-${HOME}/.cache}/modelkit/llama-cpp-portable-wheels/${key}"
    if ! ls "${wheels}"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "== building a portable llama-cpp-python ${MODELKIT_LLAMA_CPP_VERSION} (${label}: ${cmake_args}); once, minutes"
        rm -rf "${wheels}.tmp" && mkdir -p "${wheels}.tmp"
        CMAKE_ARGS="${cmake_args}" python -m pip wheel -q --no-deps --no-cache-dir \
            -w "${wheels}.tmp" "llama-cpp-python==${MODELKIT_LLAMA_CPP_VERSION}"
        modelkit_check_llama_wheel "${wheels}.tmp"/llama_cpp_python-*.whl || return 1
        echo "${label}" > "${wheels}.tmp/llama-cpp-build.txt"
        rm -rf "${wheels}" && mv "${wheels}.tmp" "${wheels}"
    fi
    mkdir -p "${dest}"
    cp "${wheels}"/llama_cpp_python-*.whl "${wheels}/llama-cpp-build.txt" "${dest}/"
}

# Unpack a llama-cpp-python wheel into a temp folder and check that its llama.cpp has a CPU
# backend (llama_print_system_info names the CPU features it uses; a wheel whose backends
# are not loaded prints nothing there and cannot load any model). Uses this venv's numpy &c.
modelkit_check_llama_wheel() {
    local wheel=${1:?usage: modelkit_check_llama_wheel WHEEL} tmp info
    tmp=$(mktemp -d)
    python -m pip install -q --no-deps --no-compile --target "${tmp}" "${wheel}" || { rm -rf "${tmp}"; return 1; }
    info=$(cd "${tmp}" && PYTHONPATH="${tmp}" python -c \
        'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())' 2>&1) || true
    rm -rf "${tmp}"
    echo "   llama.cpp system info: ${info}"
    case "${info}" in
        *"CPU :"*) return 0 ;;
        *) echo "error: ${wheel##*/}: llama.cpp has no CPU backend loaded (system info: '${info}')" >&2
           return 1 ;;
    esac
}
