"""Kubernetes manifests for one model: Deployment, Service, PodDisruptionBudget and an
autoscaler on the queue depth (HPA or KEDA ScaledObject), built as dicts.

Choices (and why):

* Probes: a ``startupProbe`` on ``/readyz`` whose budget (failureThreshold × periodSeconds)
  comes from the model's size, so a slow load is never killed; ``readinessProbe`` on
  ``/readyz`` (503 until ``MODELKIT_PRELOAD``'s model is loaded); ``livenessProbe`` on
  ``/healthz`` (the process answers), never the model's state: a liveness failure restarts the
  pod, and reloading a model will not cure a wedged one faster.
* Shutdown: ``preStop`` pauses PRESTOP_SECONDS so endpoints drop the pod before SIGTERM; then
  the server finishes in-flight generations for up to ``MODELKIT_SHUTDOWN_TIMEOUT``;
  ``terminationGracePeriodSeconds`` covers both plus a margin. The pause is Kubernetes' own
  ``sleep`` action from 1.30 on (beta, on by default; it needs nothing in the image); before
  that, an ``exec`` of the image's Python (the runtime image always has it; a ``sleep`` binary
  it may not).
* Rollouts: ``maxUnavailable: 0`` and ``maxSurge: 1``, so capacity never drops while a new pod
  loads; ``progressDeadlineSeconds`` outlasts the startup budget.
* The restricted Pod Security Standard for every container (init containers too): non-root
  uid/gid 65532, no privilege escalation, every capability dropped, seccomp RuntimeDefault, a
  read-only root with an emptyDir at /tmp; no service-account token.
* Autoscaling on ``modelkit_queued_requests`` (requests waiting for a slot), not CPU: a model
  server at its slot count queues work while its CPU use stays flat. ``hpa`` reads it as a
  Pods metric (needs prometheus-adapter exposing it through the custom metrics API; one pod
  serves one model, so the per-pod series is that model's queue); ``keda`` queries Prometheus
  for ``sum(modelkit_queued_requests{model="NAME"})``.
"""

from __future__ import annotations

from typing import Any

from modelkit.deploy.spec import (
    IMAGE_VOLUME_PATH,
    MODELS_PATH,
    PRESTOP_SECONDS,
    RUN_AS,
    SERVER_PORT,
    TMP_PATH,
    Autoscale,
    DeploySpec,
    ModelSource,
)
from modelkit.deploy.writer import Document

__all__ = [
    "HEALTH_PATH",
    "READY_PATH",
    "autoscaler_documents",
    "container_security_context",
    "generate",
    "labels",
    "metadata",
    "pod_annotations",
    "pod_security_context",
    "pre_stop",
    "probes",
    "queue_query",
    "resources",
    "scaling_behavior",
    "server_container",
]

READY_PATH = "/readyz"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
QUEUE_METRIC = "modelkit_queued_requests"
STARTUP_PERIOD = 5
PORT_NAME = "http"
TMP_SIZE = "256Mi"
COPY_MODEL_SCRIPT = """\
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for folder, _, files in os.walk(src):
    out = os.path.join(dst, os.path.relpath(folder, src))
    os.makedirs(out, exist_ok=True)
    for name in files:
        shutil.copyfile(os.path.join(folder, name), os.path.join(out, name))
"""


def labels(spec: DeploySpec) -> dict[str, str]:
    """The selector labels of every object of this deployment."""
    return {"app.kubernetes.io/name": "modelkit", "app.kubernetes.io/instance": spec.name}


def _all_labels(spec: DeploySpec) -> dict[str, str]:
    return {
        **labels(spec),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "modelkit",
    }


def metadata(spec: DeploySpec, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or spec.name}
    if spec.options.namespace:
        meta["namespace"] = spec.options.namespace
    meta["labels"] = _all_labels(spec)
    meta["annotations"] = {"modelkit.io/model": spec.facts.name}
    return meta


def container_security_context() -> dict[str, Any]:
    """The restricted profile's container settings."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probes(spec: DeploySpec, port: str | int = PORT_NAME) -> dict[str, Any]:
    """startup and readiness on /readyz, liveness on /healthz; ``port`` by name or number."""

    def _http_get(path: str) -> dict[str, Any]:
        return {"path": path, "port": port}

    startup_failures = -(-spec.startup_seconds // STARTUP_PERIOD)
    return {
        "startupProbe": {
            "httpGet": _http_get(READY_PATH),
            "periodSeconds": STARTUP_PERIOD,
            "timeoutSeconds": 3,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {
            "httpGet": _http_get(READY_PATH),
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": _http_get(HEALTH_PATH),
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }


def pre_stop(spec: DeploySpec) -> dict[str, Any]:
    if spec.kube_version >= (1, 30):
        return {"sleep": {"seconds": PRESTOP_SECONDS}}
    code = f"import time; time.sleep({PRESTOP_SECONDS})"
    return {"exec": {"command": ["python", "-c", code]}}


def resources(spec: DeploySpec) -> dict[str, Any]:
    r = spec.resources
    requests: dict[str, str] = {"cpu": str(r.cpu), "memory": r.memory}
    limits: dict[str, str] = {"memory": r.memory}
    if spec.options.model_source is ModelSource.INIT:
        requests["ephemeral-storage"] = _model_disk(spec)
    return {"requests": requests, "limits": limits}


def _model_disk(spec: DeploySpec) -> str:
    """The emptyDir the init container fills: the model plus a tenth, in MiB."""
    mib = 1024 * 1024
    return f"{-(-spec.facts.total_bytes * 11 // 10 // mib) + 1}Mi"


def server_container(spec: DeploySpec, *, name: str = "server") -> dict[str, Any]:
    """The model server's container: image, port, environment, resources, probes, shutdown,
    security context and mounts (the /tmp emptyDir, and the model for the non-baked
    sources)."""
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": TMP_PATH}]
    source = spec.options.model_source
    if source is ModelSource.IMAGE_VOLUME:
        mounts.append({"name": "model", "mountPath": IMAGE_VOLUME_PATH, "readOnly": True})
    elif source is ModelSource.INIT:
        mounts.append({"name": "model", "mountPath": MODELS_PATH, "readOnly": True})
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
    }
    if spec.image_pinned:
        container["imagePullPolicy"] = "IfNotPresent"
    container["ports"] = [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}]
    container["env"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    container["resources"] = resources(spec)
    container.update(probes(spec))
    container["lifecycle"] = {"preStop": pre_stop(spec)}
    container["securityContext"] = container_security_context()
    container["volumeMounts"] = mounts
    return container


def _init_container(spec: DeploySpec) -> dict[str, Any]:
    """Copies the model image's store into the emptyDir, with the image's own Python (the
    image promises no shell or ``cp``). Folders are made writable, not copied with the image's
    read-only modes: a rerun (the pod's sandbox restarted, the emptyDir kept) copies again."""
    assert spec.model_image is not None
    return {
        "name": "copy-model",
        "image": spec.model_image,
        "command": ["python", "-c", COPY_MODEL_SCRIPT, MODELS_PATH, "/model-copy"],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "model", "mountPath": "/model-copy"}],
    }


def _volumes(spec: DeploySpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}]
    source = spec.options.model_source
    if source is ModelSource.IMAGE_VOLUME:
        assert spec.model_image is not None
        image = {"reference": spec.model_image, "pullPolicy": "IfNotPresent"}
        volumes.append({"name": "model", "image": image})
    elif source is ModelSource.INIT:
        volumes.append({"name": "model", "emptyDir": {"sizeLimit": _model_disk(spec)}})
    return volumes


def pod_annotations(spec: DeploySpec) -> dict[str, str]:
    """Prometheus' conventional scrape annotations, and the model's digest (a new model
    rolls the pods)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(SERVER_PORT),
        "prometheus.io/path": METRICS_PATH,
        "modelkit.io/model-digest": spec.facts.digest,
    }


def pod_spec(spec: DeploySpec) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": spec.grace_seconds,
    }
    if spec.options.model_source is ModelSource.INIT:
        pod["initContainers"] = [_init_container(spec)]
    pod["containers"] = [server_container(spec)]
    pod["volumes"] = _volumes(spec)
    return pod


def deployment(spec: DeploySpec) -> dict[str, Any]:
    # An autoscaler owns the replica count: a `replicas` here would reset it at each apply.
    autoscaled = spec.options.autoscale is not Autoscale.NONE
    replicas = {} if autoscaled else {"replicas": spec.options.replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec),
        "spec": {
            **replicas,
            "selector": {"matchLabels": labels(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "progressDeadlineSeconds": max(600, spec.startup_seconds + 120),
            "template": {
                "metadata": {"labels": _all_labels(spec), "annotations": pod_annotations(spec)},
                "spec": pod_spec(spec),
            },
        },
    }


def service(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(spec),
            "ports": [
                {"name": PORT_NAME, "port": SERVER_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def pod_disruption_budget(spec: DeploySpec) -> dict[str, Any]:
    # maxUnavailable 1 (not minAvailable): one replica may be evicted at a time, and a single
    # replica does not block node drains forever.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(spec),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels(spec)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def queue_query(spec: DeploySpec) -> str:
    """The PromQL of the cluster-wide queue of this model."""
    return f'sum({QUEUE_METRIC}{{model="{spec.facts.name}"}})'


def scaling_behavior() -> dict[str, Any]:
    """New replicas take the startup budget to load: do not add more while the last ones are
    still loading, and give capacity back slowly."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 30,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
        },
    }


def _hpa(spec: DeploySpec, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": spec.options.replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(spec.options.queue_target),
                        },
                    },
                }
            ],
            "behavior": scaling_behavior(),
        },
    }


def _scaled_object(spec: DeploySpec, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicaCount": spec.options.replicas,
            "maxReplicaCount": spec.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": scaling_behavior()}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": spec.options.prometheus_url,
                        "query": queue_query(spec),
                        "threshold": str(spec.options.queue_target),
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }


def autoscaler_documents(spec: DeploySpec, target: str) -> list[Document]:
    """The ``--autoscale`` choice's object for the Deployment named ``target``."""
    if spec.options.autoscale is Autoscale.HPA:
        return [Document("horizontalpodautoscaler.yaml", _hpa(spec, target))]
    if spec.options.autoscale is Autoscale.KEDA:
        return [Document("scaledobject.yaml", _scaled_object(spec, target))]
    return []


def generate(spec: DeploySpec) -> list[Document]:
    """Deployment, Service, PodDisruptionBudget and the autoscaler (if any)."""
    return [
        Document("deployment.yaml", deployment(spec)),
        Document("service.yaml", service(spec)),
        Document("poddisruptionbudget.yaml", pod_disruption_budget(spec)),
        *autoscaler_documents(spec, spec.name),
    ]
