"""Every Kubernetes manifest validates in strict mode (unknown fields are errors) against the
official schemas of each Kubernetes version, offline, with ``kubernetes-validate``. CRD kinds
(KEDA, KServe) have no schema there: tests/deploy/test_crds.py checks them."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from deploy_helpers import PINNED, by_kind, make_spec, manifests

from modelkit.errors import DeployError

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (in the dev extra)"
)

CRD_GROUPS = ("keda.sh/", "serving.kserve.io/")


def _versions() -> list[str]:
    from kubernetes_validate.utils import all_versions, major_minor

    newest = major_minor(all_versions()[-1])
    return sorted({"1.29", "1.30", "1.31", newest}, key=lambda v: tuple(map(int, v.split("."))))


VERSIONS = _versions()


def _validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def _core(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]


def test_versions_include_the_newest_schema() -> None:
    from kubernetes_validate.utils import all_versions

    assert {"1.29", "1.30", "1.31"} <= set(VERSIONS)
    assert VERSIONS[-1] == ".".join(all_versions()[-1].split(".")[:2])


def _sources(version: str) -> list[str]:
    minor = int(version.split(".")[1])
    return ["baked", "init", *(["image-volume"] if minor >= 31 else [])]


CASES = [
    (version, source, autoscale)
    for version in VERSIONS
    for source, autoscale in itertools.product(_sources(version), ["hpa", "keda", "none"])
]


@pytest.mark.parametrize(("version", "source", "autoscale"), CASES)
def test_kubernetes_manifests_validate_strictly(version: str, source: str, autoscale: str) -> None:
    options: dict[str, Any] = {
        "kube_version": version,
        "model_source": source,
        "autoscale": autoscale,
        "image_digest": PINNED,
        "namespace": "llm",
        "replicas": 2,
    }
    if source != "baked":
        options["model_image"] = "registry.example.com/models/qwen-demo-model:1"
    docs = manifests("kubernetes", make_spec(**options))
    kinds = {d["kind"] for d in _core(docs)}
    expected = {"Deployment", "Service", "PodDisruptionBudget"}
    if autoscale == "hpa":
        expected.add("HorizontalPodAutoscaler")
    assert kinds == expected
    for doc in _core(docs):
        _validate(doc, version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("autoscale", ["hpa", "keda", "none"])
def test_kserve_core_kinds_validate(version: str, autoscale: str) -> None:
    docs = manifests("kserve", make_spec(kube_version=version, autoscale=autoscale))
    for doc in _core(docs):
        _validate(doc, version)
    # The pod-level parts KServe passes on: the container and volume shapes of a PodSpec.
    runtime = by_kind(docs)["ServingRuntime"]["spec"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-shape"},
        "spec": {
            "containers": runtime["containers"],
            "volumes": runtime["volumes"],
            **{
                k: v
                for k, v in by_kind(docs)["InferenceService"]["spec"]["predictor"].items()
                if k not in ("model", "minReplicas", "maxReplicas")
            },
        },
    }
    _validate(pod, version)


def test_strict_mode_rejects_unknown_fields() -> None:
    """The check has teeth: a misspelt field fails."""
    deployment = by_kind(manifests("kubernetes", make_spec()))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, "1.31")


def test_image_volume_is_refused_before_1_31() -> None:
    model_image = "registry.example.com/models/qwen-demo-model:1"
    with pytest.raises(DeployError, match=r"1\.31 or newer"):
        make_spec(kube_version="1.30", model_source="image-volume", model_image=model_image)
    # ... and the 1.30 schema itself has no image volumes: what 1.31 gets would not apply.
    docs = manifests(
        "kubernetes",
        make_spec(kube_version="1.31", model_source="image-volume", model_image=model_image),
    )
    deployment = by_kind(docs)["Deployment"]
    _validate(deployment, "1.31")
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, "1.30")


def test_pre_stop_sleep_from_1_30_exec_before() -> None:
    for version, kind in (("1.29", "exec"), ("1.30", "sleep"), ("1.31", "sleep")):
        pod = by_kind(manifests("kubernetes", make_spec(kube_version=version)))["Deployment"]
        container = pod["spec"]["template"]["spec"]["containers"][0]
        assert list(container["lifecycle"]["preStop"]) == [kind], version
