"""``modelkit deploy compose|kubernetes|kserve NAME --image IMAGE``: ready-to-apply files for a
model image, sized from the stored model (see :mod:`modelkit.deploy`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelkit.config import DEFAULT_PORT, Settings
from modelkit.deploy import (
    DEFAULT_KUBE_VERSION,
    Autoscale,
    DeployOptions,
    DeploySpec,
    ModelSource,
    generate,
    model_facts,
    resolve,
    write_documents,
)
from modelkit.deploy.kserve import predictor_deployment_name
from modelkit.deploy.spec import DEFAULT_PROMETHEUS_URL
from modelkit.store import Store

_MIB = 1024 * 1024


def _common(command: Callable[..., None]) -> Callable[..., None]:
    """The options every target takes."""
    options = [
        click.argument("name"),
        click.option(
            "--image",
            required=True,
            metavar="IMAGE",
            help="The image to run: the model image from `modelkit image` (the runtime image "
            "with --model-source image-volume|init).",
        ),
        click.option(
            "--image-digest",
            metavar="sha256:HEX",
            help="Pin --image to this digest (`modelkit image` prints it).",
        ),
        click.option(
            "-o",
            "--output",
            "out_dir",
            metavar="DIR",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where to write the files (default: deploy/<target>).",
        ),
        click.option(
            "--single-file",
            is_flag=True,
            help="One multi-document YAML file instead of one file per object.",
        ),
        click.option("--name", "object_name", metavar="NAME", help="Object/service name."),
        click.option(
            "--replicas", type=int, default=1, show_default=True, help="Replicas (the minimum)."
        ),
        click.option(
            "--parallel",
            type=int,
            default=1,
            show_default=True,
            help="Requests each replica serves at once (OLLAMA_NUM_PARALLEL).",
        ),
        click.option(
            "--num-ctx",
            type=int,
            help="Context per request (default: the model's num_ctx, else 4096).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _kube(command: Callable[..., None]) -> Callable[..., None]:
    """The options of the Kubernetes targets."""
    options = [
        click.option("--namespace", metavar="NS", help="metadata.namespace of every object."),
        click.option(
            "--kube-version",
            default=DEFAULT_KUBE_VERSION,
            show_default=True,
            metavar="MAJOR.MINOR",
            help="The cluster's Kubernetes version.",
        ),
        click.option(
            "--autoscale",
            type=click.Choice([a.value for a in Autoscale]),
            default=Autoscale.HPA.value,
            show_default=True,
            help="Scale on the queue depth with an HPA (prometheus-adapter) or KEDA, or not.",
        ),
        click.option(
            "--max-replicas", type=int, help="The autoscaler's ceiling (default 4 × --replicas)."
        ),
        click.option(
            "--queue-target",
            type=int,
            default=2,
            show_default=True,
            help="Queued requests per replica the autoscaler aims at.",
        ),
        click.option(
            "--prometheus-url",
            default=DEFAULT_PROMETHEUS_URL,
            show_default=True,
            metavar="URL",
            help="The Prometheus KEDA queries (--autoscale keda).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _describe(spec: DeploySpec) -> str:
    r = spec.resources
    return (
        f"{spec.facts.name}: {r.memory} memory ({r.weights_bytes / _MIB:.0f} MiB weights + "
        f"{r.kv_cache_bytes / _MIB:.0f} MiB KV cache for {r.parallel} × {r.num_ctx} tokens + "
        f"{r.compute_bytes / _MIB:.0f} MiB compute + {r.overhead_bytes / _MIB:.0f} MiB "
        f"runtime), {r.cpu} CPU, startup budget {spec.startup_seconds} s"
    )


def _run(target: str, model: str, out_dir: Path | None, single_file: bool, **opts: Any) -> None:
    options = DeployOptions(**opts)
    store = Store(Settings.from_env().models)
    spec = resolve(model_facts(store, model), options)
    documents = generate(target, spec)
    directory = out_dir or Path("deploy") / target
    single = f"{target}.yaml" if single_file and target != "compose" else None
    paths = write_documents(documents, directory, single_file=single)
    click.echo(_describe(spec))
    for path in paths:
        kinds = ", ".join(
            d.body.get("kind", "Compose file")
            for d in documents
            if single or d.filename == path.name
        )
        click.echo(f"wrote {path} ({kinds})")
    _notes(target, spec, directory, paths)


def _notes(target: str, spec: DeploySpec, directory: Path, paths: list[Path]) -> None:
    if not spec.image_pinned:
        click.echo(
            f"note: {spec.image} is referenced by tag; pin it with --image-digest "
            "(`modelkit image` prints the digest) so every replica runs the same bytes",
            err=True,
        )
    if target == "compose":
        compose_file = paths[0]
        click.echo(
            f"apply: docker compose -f {compose_file} up -d"
            f"   (or: docker-compose -f {compose_file} up -d)"
        )
        click.echo(
            f"then: curl http://{spec.options.bind}:{spec.options.port}/readyz   "
            f"(healthy once {spec.facts.name} is loaded)"
        )
        return
    click.echo(f"apply: kubectl apply -f {directory}")
    autoscale = spec.options.autoscale
    if autoscale is Autoscale.HPA:
        click.echo(
            "note: the HPA reads the Pods metric modelkit_queued_requests: it needs "
            "prometheus-adapter (or another custom-metrics API server) exposing it from "
            "Prometheus' scrapes of /metrics; until then it keeps the minimum replicas"
        )
    elif autoscale is Autoscale.KEDA:
        click.echo(
            f"note: the ScaledObject needs KEDA installed and Prometheus at "
            f"{spec.options.prometheus_url} scraping the pods' /metrics"
        )
    if spec.options.model_source is ModelSource.IMAGE_VOLUME:
        click.echo(
            "note: image volumes need the ImageVolume feature gate on the API server and "
            "kubelets, and a container runtime that supports them (containerd 2.1+, CRI-O 1.31+)"
        )
    if target == "kserve":
        click.echo(
            f"note: KServe runs it as Deployment {predictor_deployment_name(spec)} "
            "(RawDeployment mode); clients speak the Ollama API to its Service on port 11434"
        )


@click.group("deploy")
def deploy() -> None:
    """Write ready-to-apply files that run a model image: Compose, Kubernetes or KServe.

    NAME is a model in the local store (its size and GGUF metadata size the resources and the
    startup probe); --image is the image `modelkit image` made of it.
    """


@deploy.command("compose")
@_common
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="The host port to publish."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="The host address to publish on."
)
def compose_cmd(
    name: str, out_dir: Path | None, single_file: bool, object_name: str | None, **opts: Any
) -> None:
    """A compose.yaml with one service for the model image."""
    _run("compose", name, out_dir, single_file, name=object_name, autoscale=Autoscale.NONE, **opts)


def _model_source(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--model-image",
        metavar="IMAGE",
        help="image-volume: a `modelkit image --model-only` image; init: the model image.",
    )(command)
    return click.option(
        "--model-source",
        type=click.Choice([s.value for s in ModelSource]),
        default=ModelSource.BAKED.value,
        show_default=True,
        help="Where the weights come from: baked into --image, an image volume (1.31+), or "
        "an init container copying them into an emptyDir.",
    )(command)


@deploy.command("kubernetes")
@_common
@_kube
@_model_source
def kubernetes_cmd(
    name: str,
    out_dir: Path | None,
    single_file: bool,
    object_name: str | None,
    autoscale: str,
    model_source: str,
    **opts: Any,
) -> None:
    """Deployment, Service, PodDisruptionBudget and a queue-depth autoscaler."""
    _run(
        "kubernetes",
        name,
        out_dir,
        single_file,
        name=object_name,
        autoscale=Autoscale(autoscale),
        model_source=ModelSource(model_source),
        **opts,
    )


@deploy.command("kserve")
@_common
@_kube
def kserve_cmd(
    name: str,
    out_dir: Path | None,
    single_file: bool,
    object_name: str | None,
    autoscale: str,
    **opts: Any,
) -> None:
    """A KServe ServingRuntime + InferenceService pair (and a queue-depth autoscaler)."""
    _run(
        "kserve",
        name,
        out_dir,
        single_file,
        name=object_name,
        autoscale=Autoscale(autoscale),
        **opts,
    )
