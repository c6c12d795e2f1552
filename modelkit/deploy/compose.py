"""A Compose file for one model: one service running the model image, hardened as the
Kubernetes pod is (read-only root with a tmpfs at /tmp, every capability dropped, no new
privileges, uid/gid 65532, an init process), with the image's readiness healthcheck.

The file has no ``version`` key (the Compose specification): docker-compose 1.27+ and
``docker compose`` v2 both read it. With ``--replicas`` above 1 the host port becomes a range
of that many ports (one per replica); other services on the Compose network reach every
replica through the service name.
"""

from __future__ import annotations

from typing import Any

from modelkit.deploy.spec import (
    PRESTOP_SECONDS,
    RUN_AS,
    SERVER_PORT,
    TMP_PATH,
    DeploySpec,
    ModelSource,
)
from modelkit.deploy.writer import Document
from modelkit.errors import DeployError

__all__ = ["FILENAME", "HEALTHCHECK", "generate", "service"]

FILENAME = "compose.yaml"
HEALTHCHECK = ["CMD", "modelkit", "healthcheck", "--ready"]


def _ports(spec: DeploySpec) -> list[str]:
    host = spec.options.port
    replicas = spec.options.replicas
    published = str(host) if replicas == 1 else f"{host}-{host + replicas - 1}"
    if host + replicas - 1 > 65535:
        raise DeployError(f"--port {host} leaves no room for {replicas} replicas")
    return [f"{spec.options.bind}:{published}:{SERVER_PORT}"]


def service(spec: DeploySpec) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "image": spec.image,
        "ports": _ports(spec),
        "environment": dict(spec.env),
        "healthcheck": {
            "test": HEALTHCHECK,
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{spec.startup_seconds}s",
        },
        "read_only": True,
        "tmpfs": [TMP_PATH],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "user": f"{RUN_AS}:{RUN_AS}",
        "init": True,
        "stop_signal": "SIGTERM",
        # No preStop pause in Compose: the shutdown timeout and the runners' exit.
        "stop_grace_period": f"{spec.grace_seconds - PRESTOP_SECONDS}s",
        "mem_limit": spec.resources.memory.replace("Mi", "m"),
        "restart": "unless-stopped",
    }
    if spec.options.replicas > 1:
        svc["deploy"] = {"replicas": spec.options.replicas}
    return svc


def generate(spec: DeploySpec) -> list[Document]:
    """``compose.yaml`` with one service, named like the Kubernetes objects."""
    if spec.options.model_source is not ModelSource.BAKED:
        raise DeployError("compose supports --model-source baked only (the model image)")
    return [Document(FILENAME, {"services": {spec.name: service(spec)}})]
