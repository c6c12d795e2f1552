# Sourced by .ci/run (or by hand: `. examples/setup-env.sh; . examples/setup-docker.sh;
# modelkit_docker_setup`): what the container image tests need on a Debian 12 machine —
# a Docker engine, skopeo, a base image made offline with debootstrap, and a folder of wheels
# for the runtime image (a portable llama-cpp-python plus every dependency), so that building
# the image needs no network. Each step is a no-op when already done. Needs bash, root for
# the apt-get/dockerd/debootstrap steps, and examples/setup-env.sh sourced first.

MODELKIT_BASE_IMAGE=${MODELKIT_BASE_IMAGE:-modelkit-base:bookworm}

_modelkit_took() {  # _modelkit_took START WHAT
    echo "   ${2}: $((SECONDS - ${1}))s"
}

# docker.io (dockerd 20.10, containerd, runc; its docker-init is tini), debootstrap, skopeo,
# docker-compose (the 1.29 Python tool: the deploy tests bring a generated compose file up).
modelkit_docker_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    command -v skopeo >/dev/null || missing+=(skopeo)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]})" >&2
        return 1
    fi
    local start=${SECONDS}
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        "${missing[@]}" >/dev/null
    _modelkit_took "${start}" "apt-get install ${missing[*]}"
}

# A Docker daemon that answers: the running one, else `dockerd` started here (there is no
# systemd to start the packaged service). Its pid goes to /tmp/dockerd.pid, its log to
# /tmp/dockerd.log; it keeps running after the script.
modelkit_start_dockerd() {
    if docker version >/dev/null 2>&1; then
        return 0
    fi
    if [ -n "${DOCKER_HOST:-}" ]; then
        echo "error: no Docker daemon answers at DOCKER_HOST=${DOCKER_HOST}" >&2
        return 1
    fi
    echo "== starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd > /tmp/dockerd.log 2>&1 &
    echo $! > /tmp/dockerd.pid
    local i
    for i in $(seq 1 60); do
        if docker version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    echo "error: dockerd did not answer within 30 s; the end of /tmp/dockerd.log:" >&2
    tail -n 20 /tmp/dockerd.log >&2
    return 1
}

# The Debian mirror apt uses here (debootstrap reaches the same one), else deb.debian.org.
_modelkit_debian_mirror() {
    local uri
    uri=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | grep -v security | head -n 1 | tr -d ' ' || true)
    echo "${MODELKIT_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# A Debian 12 base image with Python 3.11 (python3, venv, pip) and tini, made without any
# image registry: debootstrap a minimal root file system and `docker import` it (~190 MB).
# Only when the daemon does not have it yet.
modelkit_base_image() {
    local tag=${1:-${MODELKIT_BASE_IMAGE}}
    if docker image inspect "${tag}" >/dev/null 2>&1; then
        return 0
    fi
    local start=${SECONDS} rootfs mirror
    mirror=$(_modelkit_debian_mirror)
    rootfs=$(mktemp -d /var/tmp/modelkit-rootfs.XXXXXX)
    echo "== debootstrap bookworm (${mirror}) for ${tag}"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,tini \
        bookworm "${rootfs}" "${mirror}" > /tmp/debootstrap.log 2>&1; then
        echo "error: debootstrap failed; the end of /tmp/debootstrap.log:" >&2
        tail -n 20 /tmp/debootstrap.log >&2
        rm -rf "${rootfs}"
        return 1
    fi
    chroot "${rootfs}" apt-get clean
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin
    tar -C "${rootfs}" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "${tag}" >/dev/null
    rm -rf "${rootfs}"
    _modelkit_took "${start}" "base image ${tag}"
}

# The runtime image's wheels, without modelkit's own (built from the checkout each time):
# the portable llama-cpp-python wheel and the wheels of every dependency of modelkit and
# llama-cpp-python, in ~/.cache/modelkit/runtime-wheels/<key>/ (key: the llama wheel and
# pyproject's dependency list). Exports MODELKIT_RUNTIME_WHEELS, the folder
# (`modelkit runtime-image --wheels "$MODELKIT_RUNTIME_WHEELS"`; the image tests read it).
modelkit_runtime_wheels() {
    local llama_dir deps key dir start=${SECONDS}
    llama_dir=$(mktemp -d)
    modelkit_portable_llama_wheel "${llama_dir}" || { rm -rf "${llama_dir}"; return 1; }
    deps=$(python - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
)
    key=$( (cd "${llama_dir}" && sha256sum -- *.whl && cat llama-cpp-build.txt && echo "${deps}") \
        | sha256sum | cut -c1-16)
    dir="${XDG_CACHE_HOME:-${HOME}/.cache}/modelkit/runtime-wheels/${key}"
    if [ ! -f "${dir}/.complete" ]; then
        echo "== wheels for the runtime image -> ${dir}"
        rm -rf "${dir}.tmp" && mkdir -p "${dir}.tmp"
        printf '%s\n' "${deps}" > "${llama_dir}/requirements.txt"
        # saves the llama wheel given and every wheel it and modelkit's dependencies need
        python -m pip wheel -q -w "${dir}.tmp" --find-links "${llama_dir}" \
            "${llama_dir}"/llama_cpp_python-*.whl -r "${llama_dir}/requirements.txt"
        cp "${llama_dir}/llama-cpp-build.txt" "${dir}.tmp/"
        touch "${dir}.tmp/.complete"
        rm -rf "${dir}" && mv "${dir}.tmp" "${dir}"
        _modelkit_took "${start}" "runtime wheels"
    fi
    rm -rf "${llama_dir}"
    export MODELKIT_RUNTIME_WHEELS="${dir}"
}

# Everything the image tests need; exports MODELKIT_RUNTIME_WHEELS and MODELKIT_BASE_IMAGE.
modelkit_docker_setup() {
    modelkit_docker_packages
    modelkit_start_dockerd
    modelkit_base_image "${MODELKIT_BASE_IMAGE}"
    modelkit_runtime_wheels
    export MODELKIT_BASE_IMAGE
    echo "   docker $(docker version --format '{{.Server.Version}}' 2>/dev/null)," \
        "base ${MODELKIT_BASE_IMAGE}, wheels ${MODELKIT_RUNTIME_WHEELS}"
}
