"""Daemonless model images: a stored model's layers on a runtime image, written or pushed.
Owns the public API; the work is in layers, model_layers, oci, base, assemble and outputs.

Public API (import from ``modelkit.image``):

- :func:`assemble` — ``assemble(store, name, *, base=None, model_only=False, env=None,
  labels=None, entrypoint=None, cmd=None, models_path="/models", source_date_epoch=None,
  platform=None, insecure=False, client=None, use_cache=True, progress=None)
  -> AssembledImage`` (close it, or use ``with``);
- :func:`write` — ``write(image, output, ref=None, progress=None) -> Output`` for
  ``oci:DIR[:TAG]`` / ``docker-archive:FILE`` (``ref``: the tag / RepoTag; default the
  model's ``name:tag``);
- :func:`push` — ``push(image, ref, *, insecure=False, progress=None, client=None)
  -> dict[digest, "exists" | "mounted" | "uploaded"]``;
- :func:`load` — ``load(image, ref) -> list[str]`` into the local Docker daemon (needs the
  optional ``docker`` package);
- :class:`ImageRef`, :func:`parse_output`, :class:`Platform`, :class:`LayerSpec` & co.;
- the runtime image (``modelkit.image.runtime``): :func:`prepare_context` writes its build
  context (Dockerfile, .dockerignore, wheels/), :func:`build_runtime_image` builds one through
  the Docker daemon.

Errors are :class:`~modelkit.errors.ImageError` (and ``RegistryError`` for registry failures).
"""

from __future__ import annotations

from modelkit.image.assemble import AssembledImage, ImageBlob, ProgressFn, assemble
from modelkit.image.base import BaseImage, read_base
from modelkit.image.layers import (
    LAYER_MEDIA_TYPE,
    Layer,
    LayerCache,
    LayerFile,
    LayerSpec,
    compute_layer,
)
from modelkit.image.model_layers import DEFAULT_MODELS_PATH, model_layer_specs
from modelkit.image.oci import Platform, host_platform
from modelkit.image.outputs import (
    Output,
    load_image,
    parse_output,
    push_image,
    write_docker_archive,
    write_oci_layout,
    write_output,
)
from modelkit.image.refs import ImageRef
from modelkit.image.runtime import DEFAULT_BASE_IMAGE, RuntimeContext, prepare_context
from modelkit.image.runtime import build_image as build_runtime_image
from modelkit.registry.client import RegistryClient

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_MODELS_PATH",
    "LAYER_MEDIA_TYPE",
    "AssembledImage",
    "BaseImage",
    "ImageBlob",
    "ImageRef",
    "Layer",
    "LayerCache",
    "LayerFile",
    "LayerSpec",
    "Output",
    "Platform",
    "ProgressFn",
    "RuntimeContext",
    "assemble",
    "build_runtime_image",
    "compute_layer",
    "default_ref",
    "host_platform",
    "load",
    "model_layer_specs",
    "parse_output",
    "prepare_context",
    "push",
    "read_base",
    "write",
    "write_docker_archive",
    "write_oci_layout",
]


def _ref(ref: ImageRef | str) -> ImageRef:
    return ImageRef.parse(ref) if isinstance(ref, str) else ref


def default_ref(image: AssembledImage) -> ImageRef:
    """``<model>:<tag>`` (lowercased, as image names must be) when no image name is given."""
    return ImageRef.parse(f"{image.model.model.lower()}:{image.model.tag}")


def write(
    image: AssembledImage,
    output: str | Output,
    ref: ImageRef | str | None = None,
    progress: ProgressFn | None = None,
) -> Output:
    """Write ``image`` to ``oci:DIR[:TAG]`` or ``docker-archive:FILE``; ``ref`` gives the tag
    (the layout's ``ref.name``, or the archive's RepoTag; default: the model's name)."""
    return write_output(image, output, default_ref(image) if ref is None else _ref(ref), progress)


def push(
    image: AssembledImage,
    ref: ImageRef | str,
    *,
    insecure: bool = False,
    progress: ProgressFn | None = None,
    client: RegistryClient | None = None,
) -> dict[str, str]:
    """Push ``image`` to ``REGISTRY/REPO:TAG``."""
    return push_image(image, _ref(ref), insecure=insecure, progress=progress, client=client)


def load(image: AssembledImage, ref: ImageRef | str) -> list[str]:
    """Load ``image`` into the local Docker daemon tagged ``ref``."""
    return load_image(image, _ref(ref).familiar)
