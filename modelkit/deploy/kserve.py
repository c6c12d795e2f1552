"""KServe manifests for one model: a ServingRuntime (serving.kserve.io/v1alpha1) that runs the
model image, and an InferenceService (serving.kserve.io/v1beta1) that uses it.

* RawDeployment mode (``serving.kserve.io/deploymentMode``): KServe makes a plain Deployment
  named ``<name>-predictor``, so the startupProbe, the volumes and the security contexts
  apply as in ``modelkit deploy kubernetes`` (Knative's serverless mode restricts several).
* The weights are baked into the image (no ``storageUri``): KServe's storage initializer and
  modelcars need a shell in the model image, which a modelkit image does not promise.
* Clients speak the Ollama API to the predictor's Service (port 11434), not KServe's
  inference protocols.
* Autoscaling: ``serving.kserve.io/autoscalerClass: external`` stops KServe from making its
  CPU HPA; ``--autoscale hpa|keda`` adds the same queue-depth autoscaler as the Kubernetes
  target, aimed at the predictor's Deployment; ``none`` fixes min = max replicas.
"""

from __future__ import annotations

from typing import Any

from modelkit.deploy import kubernetes as k8s
from modelkit.deploy.spec import (
    SERVER_PORT,
    TMP_PATH,
    Autoscale,
    DeploySpec,
    ModelSource,
)
from modelkit.deploy.writer import Document
from modelkit.errors import DeployError

__all__ = ["CONTAINER_NAME", "MODEL_FORMAT", "generate", "predictor_deployment_name"]

CONTAINER_NAME = "kserve-container"
"""The container name KServe merges an InferenceService's model spec into."""
MODEL_FORMAT = "gguf"


def runtime_name(spec: DeploySpec) -> str:
    return f"{spec.name}-runtime"


def predictor_deployment_name(spec: DeploySpec) -> str:
    """The Deployment KServe (0.11+) makes for the InferenceService in RawDeployment mode."""
    return f"{spec.name}-predictor"


def serving_runtime(spec: DeploySpec) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": spec.image}
    if spec.image_pinned:
        container["imagePullPolicy"] = "IfNotPresent"
    container["ports"] = [{"containerPort": SERVER_PORT, "protocol": "TCP"}]
    container["env"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    container["resources"] = k8s.resources(spec)
    container.update(k8s.probes(spec, port=SERVER_PORT))
    container["lifecycle"] = {"preStop": k8s.pre_stop(spec)}
    container["securityContext"] = k8s.container_security_context()
    container["volumeMounts"] = [{"name": "tmp", "mountPath": TMP_PATH}]
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": k8s.metadata(spec, runtime_name(spec)),
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
            "multiModel": False,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": k8s.TMP_SIZE}}],
            "annotations": k8s.pod_annotations(spec),
        },
    }


def inference_service(spec: DeploySpec) -> dict[str, Any]:
    meta = k8s.metadata(spec)
    meta["annotations"] = {
        **meta["annotations"],
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/autoscalerClass": "external",
    }
    fixed = spec.options.autoscale is Autoscale.NONE
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {
            "predictor": {
                "minReplicas": spec.options.replicas,
                "maxReplicas": spec.options.replicas if fixed else spec.max_replicas,
                "automountServiceAccountToken": False,
                "securityContext": k8s.pod_security_context(),
                "terminationGracePeriodSeconds": spec.grace_seconds,
                "model": {
                    "modelFormat": {"name": MODEL_FORMAT},
                    "runtime": runtime_name(spec),
                    # KServe gives a predictor without resources its defaults (1 CPU, 2Gi):
                    # repeat the runtime's here so they win.
                    "resources": k8s.resources(spec),
                },
            }
        },
    }


def generate(spec: DeploySpec) -> list[Document]:
    """ServingRuntime, InferenceService and the autoscaler (if any)."""
    if spec.options.model_source is not ModelSource.BAKED:
        raise DeployError("kserve supports --model-source baked only (the model image as --image)")
    return [
        Document("servingruntime.yaml", serving_runtime(spec)),
        Document("inferenceservice.yaml", inference_service(spec)),
        *k8s.autoscaler_documents(spec, predictor_deployment_name(spec)),
    ]
