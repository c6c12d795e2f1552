"""What every generator starts from: the user's choices (:class:`DeployOptions`) checked and
resolved against one model's facts into a :class:`DeploySpec` — names, images, environment,
resources and timings. The generators only turn a spec into manifests.

Choices made here, once for every target:

* ``MODELKIT_PRELOAD`` names the model, so ``/readyz`` answers 200 only once it is loaded;
  ``OLLAMA_CONTEXT_LENGTH`` and ``OLLAMA_NUM_PARALLEL`` fix what the resources were sized for;
  ``OLLAMA_MAX_LOADED_MODELS=1``; ``MODELKIT_SHUTDOWN_TIMEOUT`` gives in-flight generations
  SHUTDOWN_SECONDS after SIGTERM.
* A Modelfile's ``PARAMETER num_ctx`` wins over ``OLLAMA_CONTEXT_LENGTH`` in the server, so a
  ``--num-ctx`` that differs from it is refused rather than silently sized wrong.
* Images are referenced by digest when one is known (``@sha256:`` in the reference or
  ``image_digest``); the tag stays beside it for people.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum

from modelkit.config import DEFAULT_CONTEXT_LENGTH, DEFAULT_PORT
from modelkit.deploy.sizing import (
    ModelFacts,
    Resources,
    estimate_resources,
    startup_budget_seconds,
)
from modelkit.errors import DeployError

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "MIN_KUBE_VERSION",
    "MODELS_PATH",
    "PRESTOP_SECONDS",
    "RUN_AS",
    "SHUTDOWN_SECONDS",
    "Autoscale",
    "DeployOptions",
    "DeploySpec",
    "ModelSource",
    "parse_kube_version",
    "resolve",
]

RUN_AS = 65532
"""The uid and gid modelkit images run as."""
SERVER_PORT = DEFAULT_PORT
MODELS_PATH = "/models"
TMP_PATH = "/tmp"
IMAGE_VOLUME_PATH = "/model-image"
"""Where ``--model-source image-volume`` mounts the ``--model-only`` image (whose files sit
under ``models/``: ``OLLAMA_MODELS`` is then ``/model-image/models``)."""
SHUTDOWN_SECONDS = 60
"""``MODELKIT_SHUTDOWN_TIMEOUT``: how long in-flight generations may go on after SIGTERM."""
PRESTOP_SECONDS = 5
"""The pause before SIGTERM, while Services and load balancers drop the pod."""
GRACE_MARGIN_SECONDS = 10
"""Beyond the preStop pause and the shutdown timeout: the runners' own exit."""
DEFAULT_KUBE_VERSION = "1.31"
MIN_KUBE_VERSION = (1, 27)
"""``unhealthyPodEvictionPolicy`` (on by default since 1.27) and everything else used."""
DEFAULT_PROMETHEUS_URL = "http://prometheus-server.monitoring.svc:9090"
MAX_NAME = 45
"""Object names stay short enough for suffixes (KServe adds ``-predictor``, Kubernetes a
ReplicaSet hash and a pod suffix) under the 63-character limit."""

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/:\[\]]*(@sha256:[0-9a-f]{64})?")
_DNS_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class ModelSource(StrEnum):
    """Where the pod's weights come from."""

    BAKED = "baked"
    """The model image (runtime + model): one image, pulled whole."""
    IMAGE_VOLUME = "image-volume"
    """The runtime image, plus a ``--model-only`` image mounted read-only (Kubernetes ≥ 1.31
    with the ImageVolume feature on)."""
    INIT = "init"
    """The runtime image, plus an init container from the model image copying the model into
    an emptyDir."""


class Autoscale(StrEnum):
    HPA = "hpa"
    KEDA = "keda"
    NONE = "none"


def parse_kube_version(text: str) -> tuple[int, int]:
    """``1.31`` / ``v1.31.2`` → ``(1, 31)``; :class:`DeployError` when not a version we
    generate for."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if m is None:
        raise DeployError(f"--kube-version {text!r} is not MAJOR.MINOR (e.g. 1.31)")
    version = (int(m.group(1)), int(m.group(2)))
    if version < MIN_KUBE_VERSION:
        low = ".".join(map(str, MIN_KUBE_VERSION))
        raise DeployError(f"Kubernetes {text} is too old: modelkit deploy needs {low} or newer")
    return version


def _check_image(ref: str, option: str) -> str:
    ref = ref.strip()
    if not ref or _IMAGE_RE.fullmatch(ref) is None or ref.count("@") > 1:
        raise DeployError(
            f"{option} {ref!r} is not an image reference ([HOST/]REPO[:TAG][@sha256:HEX])"
        )
    return ref


def pin_image(ref: str, digest: str | None, option: str) -> str:
    """``ref`` with ``@digest`` when a digest is known (from ``ref`` or ``digest``)."""
    ref = _check_image(ref, option)
    if digest is None:
        return ref
    digest = digest.strip()
    if not _DIGEST_RE.fullmatch(digest):
        raise DeployError(f"{digest!r} is not an image digest (sha256:<64 lowercase hex>)")
    if "@" in ref:
        if ref.split("@", 1)[1] != digest:
            raise DeployError(f"{option} {ref!r} names another digest than {digest}")
        return ref
    return f"{ref}@{digest}"


def object_name(model: str) -> str:
    """A DNS-1035 label for a model's objects: ``qwen2.5-coder:0.5b`` →
    ``qwen2-5-coder-0-5b``; the ``latest`` tag and the default namespace are left out."""
    text = model.lower()
    base, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", "")
    base = base.removeprefix("registry.ollama.ai/").removeprefix("library/")
    if tag and tag != "latest":
        base = f"{base}-{tag}"
    name = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    if len(name) > MAX_NAME:
        suffix = hashlib.sha256(model.encode()).hexdigest()[:6]
        name = f"{name[: MAX_NAME - 7].rstrip('-')}-{suffix}"
    return name


def check_object_name(name: str) -> str:
    if len(name) > MAX_NAME or _DNS_LABEL_RE.fullmatch(name) is None:
        raise DeployError(
            f"--name {name!r}: use lowercase letters, digits and '-', starting with a letter, "
            f"at most {MAX_NAME} characters"
        )
    return name


@dataclass(frozen=True)
class DeployOptions:
    """What the user asked for (the CLI's options, as data)."""

    image: str
    image_digest: str | None = None
    name: str | None = None
    """Object / service name; derived from the model's name when None."""
    namespace: str | None = None
    replicas: int = 1
    max_replicas: int | None = None
    """The autoscaler's ceiling; 4 × replicas when None."""
    parallel: int = 1
    num_ctx: int | None = None
    kube_version: str = DEFAULT_KUBE_VERSION
    autoscale: Autoscale = Autoscale.HPA
    queue_target: int = 2
    """Queued requests per replica the autoscaler aims at."""
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    model_source: ModelSource = ModelSource.BAKED
    model_image: str | None = None
    port: int = SERVER_PORT
    """The host port Compose publishes (the container always listens on 11434)."""
    bind: str = "127.0.0.1"
    """The host address Compose publishes on."""
    kv_cache_type: str = "f16"

    def __post_init__(self) -> None:
        # Plain strings (from a CLI or a test) become the enums the generators compare with.
        try:
            object.__setattr__(self, "autoscale", Autoscale(self.autoscale))
        except ValueError:
            raise DeployError(
                f"--autoscale must be hpa, keda or none, not {self.autoscale!r}"
            ) from None
        try:
            object.__setattr__(self, "model_source", ModelSource(self.model_source))
        except ValueError:
            raise DeployError(
                f"--model-source must be baked, image-volume or init, not {self.model_source!r}"
            ) from None


@dataclass(frozen=True)
class DeploySpec:
    """A checked, resolved deployment of one model."""

    facts: ModelFacts
    options: DeployOptions
    name: str
    image: str
    image_pinned: bool
    model_image: str | None
    kube_version: tuple[int, int]
    resources: Resources
    startup_seconds: int
    max_replicas: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def grace_seconds(self) -> int:
        """``terminationGracePeriodSeconds`` / ``stop_grace_period``."""
        return PRESTOP_SECONDS + SHUTDOWN_SECONDS + GRACE_MARGIN_SECONDS

    @property
    def kube_version_text(self) -> str:
        return f"{self.kube_version[0]}.{self.kube_version[1]}"

    @property
    def models_path(self) -> str:
        """``OLLAMA_MODELS`` inside the serving container."""
        return self.env["OLLAMA_MODELS"]


def _num_ctx(facts: ModelFacts, asked: int | None) -> int:
    from_model = facts.param_int("num_ctx")
    if asked is not None and asked <= 0:
        raise DeployError(f"--num-ctx must be positive, not {asked}")
    if from_model is not None and from_model > 0:
        if asked is not None and asked != from_model:
            raise DeployError(
                f"model {facts.name} sets num_ctx {from_model} in its Modelfile, which the "
                f"server uses whatever OLLAMA_CONTEXT_LENGTH says: rebuild it with "
                f"PARAMETER num_ctx {asked}, or leave --num-ctx out"
            )
        return from_model
    return asked if asked is not None else DEFAULT_CONTEXT_LENGTH


def resolve(facts: ModelFacts, options: DeployOptions) -> DeploySpec:
    """Check ``options`` against each other and the model; :class:`DeployError` if they
    do not fit."""
    if options.replicas < 1:
        raise DeployError(f"--replicas must be at least 1, not {options.replicas}")
    if options.parallel < 1:
        raise DeployError(f"--parallel must be at least 1, not {options.parallel}")
    if options.queue_target < 1:
        raise DeployError(f"--queue-target must be at least 1, not {options.queue_target}")
    if not 1 <= options.port <= 65535:
        raise DeployError(f"--port {options.port} is not a TCP port")
    max_replicas = options.max_replicas or options.replicas * 4
    if max_replicas < options.replicas:
        raise DeployError(f"--max-replicas {max_replicas} is below --replicas {options.replicas}")
    if options.namespace is not None and _DNS_LABEL_RE.fullmatch(options.namespace) is None:
        raise DeployError(f"--namespace {options.namespace!r} is not a namespace name")
    kube_version = parse_kube_version(options.kube_version)
    source = options.model_source
    model_image: str | None = None
    if source is ModelSource.BAKED:
        if options.model_image is not None:
            raise DeployError(
                "--model-image is for --model-source image-volume or init; with baked, "
                "--image is the model image"
            )
    else:
        if options.model_image is None:
            kind = "a --model-only image" if source is ModelSource.IMAGE_VOLUME else "the model"
            raise DeployError(
                f"--model-source {source.value} needs --model-image ({kind} image from "
                "`modelkit image`); --image is then the runtime image"
            )
        model_image = _check_image(options.model_image, "--model-image")
    if source is ModelSource.IMAGE_VOLUME and kube_version < (1, 31):
        raise DeployError(
            f"--model-source image-volume needs Kubernetes 1.31 or newer (image volumes); "
            f"--kube-version is {options.kube_version}: use --model-source init or baked"
        )
    image = pin_image(options.image, options.image_digest, "--image")
    num_ctx = _num_ctx(facts, options.num_ctx)
    resources = estimate_resources(
        facts, num_ctx=num_ctx, parallel=options.parallel, kv_cache_type=options.kv_cache_type
    )
    models_path = MODELS_PATH
    if source is ModelSource.IMAGE_VOLUME:
        # An image volume holds the model image's whole file tree: its store is under
        # models/ there.
        models_path = f"{IMAGE_VOLUME_PATH}{MODELS_PATH}"
    env = {
        "MODELKIT_PRELOAD": facts.name,
        "OLLAMA_CONTEXT_LENGTH": str(resources.num_ctx),
        "OLLAMA_NUM_PARALLEL": str(options.parallel),
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "MODELKIT_SHUTDOWN_TIMEOUT": f"{SHUTDOWN_SECONDS}s",
        "OLLAMA_MODELS": models_path,
        "OLLAMA_NOPRUNE": "1",
    }
    if options.kv_cache_type != "f16":
        env["OLLAMA_KV_CACHE_TYPE"] = options.kv_cache_type
    return DeploySpec(
        facts=facts,
        options=options,
        name=check_object_name(options.name) if options.name else object_name(facts.name),
        image=image,
        image_pinned="@" in image,
        model_image=model_image,
        kube_version=kube_version,
        resources=resources,
        startup_seconds=startup_budget_seconds(facts.weights_bytes),
        max_replicas=max_replicas,
        env=env,
    )
