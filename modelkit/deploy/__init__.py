"""Deployment files for a model image: Kubernetes (Deployment, Service, PodDisruptionBudget,
an autoscaler on the queue depth), KServe (ServingRuntime + InferenceService) and Compose.
Manifests are built as dicts and dumped as YAML, never assembled as text.

Public API::

    facts = model_facts(store, "tiny")                  # manifest, parameters, GGUF header
    spec = resolve(facts, DeployOptions(image="reg/tiny:1"))  # checked choices, resources
    docs = generate("kubernetes", spec)                  # [Document(filename, body), ...]
    paths = write_documents(docs, "deploy/", single_file=None)

Modules: ``sizing`` (memory, CPU, startup budget), ``spec`` (options → spec), one generator
module per target (``kubernetes``, ``kserve``, ``compose``) and ``writer`` (YAML files).
"""

from __future__ import annotations

from collections.abc import Callable

from modelkit.deploy import compose, kserve, kubernetes
from modelkit.deploy.sizing import (
    ModelFacts,
    Resources,
    estimate_resources,
    model_facts,
    startup_budget_seconds,
)
from modelkit.deploy.spec import (
    DEFAULT_KUBE_VERSION,
    Autoscale,
    DeployOptions,
    DeploySpec,
    ModelSource,
    resolve,
)
from modelkit.deploy.writer import Document, dump_documents, write_documents
from modelkit.errors import DeployError

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "TARGETS",
    "Autoscale",
    "DeployOptions",
    "DeploySpec",
    "Document",
    "ModelFacts",
    "ModelSource",
    "Resources",
    "dump_documents",
    "estimate_resources",
    "generate",
    "model_facts",
    "resolve",
    "startup_budget_seconds",
    "write_documents",
]

TARGETS: dict[str, Callable[[DeploySpec], list[Document]]] = {
    "compose": compose.generate,
    "kubernetes": kubernetes.generate,
    "kserve": kserve.generate,
}
"""Each target's generator."""


def generate(target: str, spec: DeploySpec) -> list[Document]:
    """The documents of ``target`` (``compose``, ``kubernetes`` or ``kserve``) for ``spec``."""
    try:
        generator = TARGETS[target]
    except KeyError:
        raise DeployError(f"unknown deploy target {target!r}") from None
    return generator(spec)
