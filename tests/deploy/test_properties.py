"""Properties of every generated manifest: probes point at endpoints the server serves, the
resources grow with the context and the parallelism, every container runs non-root under the
restricted Pod Security Standard, shutdown and rollouts leave in-flight work alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import FAKE_FACTS, PINNED, by_kind, make_spec, manifests, pod_spec_of
from fastapi.testclient import TestClient

from modelkit.config import Settings
from modelkit.deploy import estimate_resources
from modelkit.deploy.sizing import LOAD_BYTES_PER_SECOND, MIB
from modelkit.deploy.spec import PRESTOP_SECONDS, SHUTDOWN_SECONDS
from modelkit.server.app import create_app
from modelkit.store import Store

ALL_SOURCES: list[dict[str, Any]] = [
    {},
    {"model_source": "init", "model_image": "registry.example.com/m:1"},
    {"model_source": "image-volume", "model_image": "registry.example.com/m-only:1"},
]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }


@pytest.fixture(scope="module")
def server_routes(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], TestClient]:
    models = tmp_path_factory.mktemp("models")
    app = create_app(Settings.from_env({"OLLAMA_MODELS": str(models)}))
    # The route table as the app documents it (included routers too), GET routes only.
    paths = {path for path, ops in app.openapi()["paths"].items() if "get" in ops}
    return paths, TestClient(app, base_url="http://127.0.0.1:11434")


def test_probes_point_at_endpoints_the_server_serves(
    server_routes: tuple[set[str], TestClient],
) -> None:
    routes, client = server_routes
    kube = pod_spec_of(manifests("kubernetes", make_spec()))["containers"][0]
    kserve = by_kind(manifests("kserve", make_spec()))["ServingRuntime"]["spec"]["containers"][0]
    for container in (kube, kserve):
        paths = _probe_paths(container)
        assert paths == {
            "startupProbe": "/readyz",
            "readinessProbe": "/readyz",
            "livenessProbe": "/healthz",
        }
        assert set(paths.values()) <= routes
    assert "/metrics" in routes  # what the scrape annotations and the autoscalers read
    with client:  # the app started: no preload, so ready at once
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200, path
    # The port the probes name is the container's port, the one the server listens on.
    assert kube["ports"] == [{"name": "http", "containerPort": 11434, "protocol": "TCP"}]
    assert {kube[p]["httpGet"]["port"] for p in _probe_paths(kube)} == {"http"}
    assert {kserve[p]["httpGet"]["port"] for p in _probe_paths(kserve)} == {11434}


def test_resources_grow_with_num_ctx_and_parallel() -> None:
    def memory(num_ctx: int, parallel: int) -> int:
        return estimate_resources(FAKE_FACTS, num_ctx=num_ctx, parallel=parallel).memory_bytes

    for ctx_a, ctx_b in ((2048, 4096), (4096, 8192), (8192, 32768)):
        assert memory(ctx_a, 1) < memory(ctx_b, 1)
    for par_a, par_b in ((1, 2), (2, 4), (4, 8)):
        assert memory(4096, par_a) < memory(4096, par_b)
    # The KV cache is exactly linear in the cells: 24 layers × 2 heads × (64 + 64) × 2 bytes.
    r = estimate_resources(FAKE_FACTS, num_ctx=4096, parallel=2)
    assert r.kv_cache_bytes == 4096 * 2 * 24 * 2 * 128 * 2
    # ... and what the manifests request follows, requests = limits for memory.
    small = pod_spec_of(manifests("kubernetes", make_spec(num_ctx=2048)))["containers"][0]
    big = pod_spec_of(manifests("kubernetes", make_spec(num_ctx=8192, parallel=4)))
    big_res = big["containers"][0]["resources"]
    for res in (small["resources"], big_res):
        assert res["requests"]["memory"] == res["limits"]["memory"]
    mem = [int(r["requests"]["memory"].removesuffix("Mi")) for r in (small["resources"], big_res)]
    assert mem[0] < mem[1]
    env = {e["name"]: e["value"] for e in big["containers"][0]["env"]}
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert env["OLLAMA_NUM_PARALLEL"] == "4"


def test_num_ctx_is_clamped_to_the_trained_context() -> None:
    a = estimate_resources(FAKE_FACTS, num_ctx=32768, parallel=1)
    b = estimate_resources(FAKE_FACTS, num_ctx=131072, parallel=1)
    assert a.memory_bytes == b.memory_bytes
    assert b.num_ctx == 32768


def test_cpu_request_follows_num_thread() -> None:
    from dataclasses import replace

    facts = replace(FAKE_FACTS, parameters={"num_thread": 6})
    res = pod_spec_of(manifests("kubernetes", make_spec(facts)))["containers"][0]["resources"]
    assert res["requests"]["cpu"] == "6"
    assert "cpu" not in res["limits"]  # no throttling mid-generation


RESTRICTED_CASES = [("kubernetes", source) for source in ALL_SOURCES] + [("kserve", {})]


@pytest.mark.parametrize(("target", "source"), RESTRICTED_CASES)
def test_every_container_runs_restricted(target: str, source: dict[str, Any]) -> None:
    docs = manifests(target, make_spec(**source))
    if target == "kubernetes":
        pod = pod_spec_of(docs)
        containers = _containers(pod)
        volumes = {v["name"]: v for v in pod["volumes"]}
    else:
        pod = by_kind(docs)["InferenceService"]["spec"]["predictor"]
        runtime = by_kind(docs)["ServingRuntime"]["spec"]
        containers = runtime["containers"]
        volumes = {v["name"]: v for v in runtime["volumes"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["automountServiceAccountToken"] is False
    assert len(containers) == (2 if source.get("model_source") == "init" else 1)
    for c in containers:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == sc["runAsGroup"] == 65532
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["readOnlyRootFilesystem"] is True
        assert "privileged" not in sc and "add" not in sc["capabilities"]
        assert "ports" not in c or all("hostPort" not in p for p in c["ports"])
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes
    server = containers[-1]
    tmp = [m for m in server["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
    for v in volumes.values():  # restricted: no hostPath and friends
        assert set(v) - {"name"} <= {"emptyDir", "image", "configMap", "secret"}


def test_where_the_weights_come_from() -> None:
    init = pod_spec_of(manifests("kubernetes", make_spec(**ALL_SOURCES[1])))
    (copy,) = init["initContainers"]
    assert copy["image"] == "registry.example.com/m:1"
    assert copy["command"][-2:] == ["/models", "/model-copy"]
    server = init["containers"][0]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["OLLAMA_MODELS"] == "/models"
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert "ephemeral-storage" in server["resources"]["requests"]

    vol = pod_spec_of(manifests("kubernetes", make_spec(**ALL_SOURCES[2])))
    (image,) = [v for v in vol["volumes"] if "image" in v]
    assert image["image"]["reference"] == "registry.example.com/m-only:1"
    env = {e["name"]: e["value"] for e in vol["containers"][0]["env"]}
    # The model-only image's store is under models/ in its file tree.
    assert env["OLLAMA_MODELS"] == "/model-image/models"
    assert env["OLLAMA_NOPRUNE"] == "1"


def test_shutdown_lets_in_flight_generations_finish() -> None:
    docs = by_kind(manifests("kubernetes", make_spec()))
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    # The server reads the value as we meant it.
    settings = Settings.from_env({"MODELKIT_SHUTDOWN_TIMEOUT": env["MODELKIT_SHUTDOWN_TIMEOUT"]})
    shutdown = settings.shutdown_timeout
    assert shutdown == SHUTDOWN_SECONDS
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == PRESTOP_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= shutdown + pre_stop
    strategy = docs["Deployment"]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert env["MODELKIT_PRELOAD"] == "qwen-demo:latest"  # /readyz waits for the model


@pytest.mark.parametrize("gigabytes", [0.4, 5, 40])
def test_startup_budget_covers_a_slow_load(gigabytes: float) -> None:
    from dataclasses import replace

    size = int(gigabytes * 1e9)
    facts = replace(FAKE_FACTS, weights_bytes=size, total_bytes=size + 10_000)
    docs = by_kind(manifests("kubernetes", make_spec(facts)))
    probe = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    budget = probe["failureThreshold"] * probe["periodSeconds"]
    assert budget >= size / LOAD_BYTES_PER_SECOND + 60
    assert LOAD_BYTES_PER_SECOND <= 20 * MIB  # a slow disk
    assert docs["Deployment"]["spec"]["progressDeadlineSeconds"] > budget
    compose = manifests("compose", make_spec(facts))[0]
    (service,) = compose["services"].values()
    start_period = int(service["healthcheck"]["start_period"].removesuffix("s"))
    assert start_period >= size / LOAD_BYTES_PER_SECOND + 60


def test_image_by_digest_when_known() -> None:
    docs = manifests("kubernetes", make_spec(image_digest=PINNED))
    assert pod_spec_of(docs)["containers"][0]["image"].endswith(":1.0@" + PINNED)
    docs = manifests("kubernetes", make_spec(image="reg.example/x@" + PINNED))
    assert pod_spec_of(docs)["containers"][0]["image"] == "reg.example/x@" + PINNED
    assert (
        "imagePullPolicy" not in pod_spec_of(manifests("kubernetes", make_spec()))["containers"][0]
    )


def test_compose_service_is_hardened() -> None:
    (service,) = manifests("compose", make_spec(replicas=1))[0]["services"].values()
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert service["user"] == "65532:65532"
    assert service["init"] is True
    assert service["healthcheck"]["test"] == ["CMD", "modelkit", "healthcheck", "--ready"]
    assert service["ports"] == ["127.0.0.1:11434:11434"]
    assert "deploy" not in service
    (three,) = manifests("compose", make_spec(replicas=3, port=9000))[0]["services"].values()
    assert three["ports"] == ["127.0.0.1:9000-9002:11434"]
    assert three["deploy"] == {"replicas": 3}


def test_written_yaml_reads_back_as_generated(tmp_path: Path) -> None:
    from modelkit.deploy import generate, write_documents

    docs = generate("kubernetes", make_spec(autoscale="keda"))
    paths = write_documents(docs, tmp_path, single_file="all.yaml")
    import yaml

    assert paths == [tmp_path / "all.yaml"]
    read = [d for d in yaml.safe_load_all(paths[0].read_text()) if d]
    assert read == [d.body for d in docs]


def test_init_container_copy_runs_and_reruns(tmp_path: Path, build_tiny: Any) -> None:
    """The init container's command, run here with this Python: it copies a store whose
    folders are read-only (as in a model image), and a second run over the copy succeeds."""
    import os
    import stat
    import subprocess
    import sys

    from modelkit.deploy import model_facts

    store = build_tiny()
    for folder, _, _ in os.walk(store.root):
        os.chmod(folder, 0o555)
    try:
        pod = pod_spec_of(manifests("kubernetes", make_spec(**ALL_SOURCES[1])))
        command = pod["initContainers"][0]["command"]
        assert command[0] == "python"
        dst = tmp_path / "copy"
        dst.mkdir()
        for _ in range(2):
            args = [sys.executable, *command[1:-2], str(store.root), str(dst)]
            subprocess.run(args, check=True, timeout=60)
        copied = Store(dst)
        assert model_facts(copied, "tiny") == model_facts(store, "tiny")
        assert stat.S_IMODE(os.stat(dst / "blobs").st_mode) & 0o200
    finally:
        for folder, _, _ in os.walk(store.root):
            os.chmod(folder, 0o755)
