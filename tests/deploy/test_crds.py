"""CRD kinds, which the official Kubernetes schemas do not cover, checked against the fields
their published API references document:

* KEDA ScaledObject, keda.sh/v1alpha1 (keda.sh/docs/latest/reference/scaledobject-spec/ and
  the Prometheus scaler page): ``spec.scaleTargetRef.name`` required; ``minReplicaCount``,
  ``maxReplicaCount``, ``pollingInterval``, ``cooldownPeriod`` integers; each trigger has a
  ``type`` and string-valued ``metadata``; the ``prometheus`` trigger needs ``serverAddress``,
  ``query`` and ``threshold``; ``metricType`` is AverageValue, Value or Utilization.
* KServe ServingRuntime, serving.kserve.io/v1alpha1 (kserve.github.io/website, "Serving
  Runtime" API reference): ``spec.containers`` required (a container named
  ``kserve-container``), ``supportedModelFormats`` entries with ``name``, optional ``version``
  and ``autoSelect``.
* KServe InferenceService, serving.kserve.io/v1beta1: ``spec.predictor`` required; its
  ``model`` needs ``modelFormat.name``; ``runtime`` names a ServingRuntime.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_helpers import PINNED, by_kind, make_spec, manifests

from modelkit.deploy.kserve import CONTAINER_NAME, predictor_deployment_name

NAME_RE = r"[a-z]([-a-z0-9]*[a-z0-9])?"
ALLOWED_SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
ALLOWED_TRIGGER = {
    "type",
    "metadata",
    "name",
    "useCachedMetrics",
    "authenticationRef",
    "metricType",
}
ALLOWED_SERVING_RUNTIME_SPEC = {
    "supportedModelFormats",
    "multiModel",
    "disabled",
    "protocolVersions",
    "containers",
    "volumes",
    "nodeSelector",
    "affinity",
    "tolerations",
    "imagePullSecrets",
    "labels",
    "annotations",
    "builtInAdapter",
    "grpcEndpoint",
    "httpDataEndpoint",
    "replicas",
    "storageHelper",
    "hostIPC",
    "workerSpec",
}


def _check_metadata(meta: dict[str, Any]) -> None:
    assert re.fullmatch(NAME_RE, meta["name"]) and len(meta["name"]) <= 63
    for value in [*meta.get("labels", {}).values(), *meta.get("annotations", {}).values()]:
        assert isinstance(value, str)


def check_scaled_object(doc: dict[str, Any], deployment: str, model: str) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    assert doc["kind"] == "ScaledObject"
    _check_metadata(doc["metadata"])
    spec = doc["spec"]
    assert set(spec) <= ALLOWED_SCALED_OBJECT_SPEC
    target = spec["scaleTargetRef"]
    assert target["name"] == deployment
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    advanced = spec.get("advanced", {})
    assert set(advanced) <= {
        "horizontalPodAutoscalerConfig",
        "restoreToOriginalReplicaCount",
        "scalingModifiers",
    }
    hpa_config = advanced.get("horizontalPodAutoscalerConfig", {})
    assert set(hpa_config) <= {"name", "behavior"}
    # behavior is autoscaling/v2's HPABehavior (test_schemas validates the HPA that has it).
    assert set(hpa_config.get("behavior", {})) <= {"scaleUp", "scaleDown"}
    (trigger,) = spec["triggers"]
    assert set(trigger) <= ALLOWED_TRIGGER
    assert trigger["type"] == "prometheus"
    assert trigger.get("metricType", "AverageValue") in ("AverageValue", "Value", "Utilization")
    metadata = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(metadata)
    assert all(isinstance(v, str) for v in metadata.values()), "trigger metadata is strings"
    assert metadata["serverAddress"].startswith(("http://", "https://"))
    assert float(metadata["threshold"]) > 0
    assert metadata["query"] == f'sum(modelkit_queued_requests{{model="{model}"}})'


@pytest.mark.parametrize("replicas", [1, 3])
def test_keda_scaled_object(replicas: int) -> None:
    spec = make_spec(autoscale="keda", replicas=replicas, queue_target=3)
    docs = by_kind(manifests("kubernetes", spec))
    assert "HorizontalPodAutoscaler" not in docs
    scaled = docs["ScaledObject"]
    check_scaled_object(scaled, docs["Deployment"]["metadata"]["name"], "qwen-demo:latest")
    assert scaled["spec"]["minReplicaCount"] == replicas
    assert scaled["spec"]["maxReplicaCount"] == 4 * replicas
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "3"
    # KEDA owns the replica count: the Deployment does not fight it at each apply.
    assert "replicas" not in docs["Deployment"]["spec"]
    # The same scaling pace as the HPA.
    hpa = by_kind(manifests("kubernetes", make_spec(autoscale="hpa")))["HorizontalPodAutoscaler"]
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == hpa["spec"]["behavior"]


def test_hpa_shape() -> None:
    docs = by_kind(manifests("kubernetes", make_spec(replicas=2, max_replicas=5)))
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen-demo"}
    assert hpa["scaleTargetRef"] == target
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "modelkit_queued_requests"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "2"}


def test_no_autoscaler_fixes_the_replicas() -> None:
    docs = by_kind(manifests("kubernetes", make_spec(autoscale="none", replicas=3)))
    assert set(docs) == {"Deployment", "Service", "PodDisruptionBudget"}
    assert docs["Deployment"]["spec"]["replicas"] == 3


@pytest.mark.parametrize("autoscale", ["hpa", "keda", "none"])
def test_kserve_pair(autoscale: str) -> None:
    spec = make_spec(autoscale=autoscale, image_digest=PINNED, replicas=2)
    docs = by_kind(manifests("kserve", spec))
    runtime, isvc = docs["ServingRuntime"], docs["InferenceService"]

    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    _check_metadata(runtime["metadata"])
    rspec = runtime["spec"]
    assert set(rspec) <= ALLOWED_SERVING_RUNTIME_SPEC
    formats = rspec["supportedModelFormats"]
    assert formats and all(isinstance(f["name"], str) for f in formats)
    assert all(isinstance(f.get("autoSelect", False), bool) for f in formats)
    (container,) = rspec["containers"]
    assert container["name"] == CONTAINER_NAME
    assert container["image"].endswith("@" + PINNED)
    assert container["ports"] == [{"containerPort": 11434, "protocol": "TCP"}]

    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    _check_metadata(isvc["metadata"])
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/autoscalerClass"] == "external"
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] in {f["name"] for f in formats}
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["resources"] == container["resources"]
    assert predictor["minReplicas"] == 2
    assert predictor["maxReplicas"] == (2 if autoscale == "none" else 8)

    deployment = predictor_deployment_name(spec)
    assert deployment == f"{isvc['metadata']['name']}-predictor"
    if autoscale == "keda":
        check_scaled_object(docs["ScaledObject"], deployment, "qwen-demo:latest")
    elif autoscale == "hpa":
        assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment
    else:
        assert set(docs) == {"ServingRuntime", "InferenceService"}
