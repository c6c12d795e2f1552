"""Where FROM can come from: each source is one module; ``resolve_from`` asks them in order."""

from __future__ import annotations

from modelkit.build.sources.base import BaseFile, FromRef, ResolvedBase, Source
from modelkit.build.sources.gguf_file import GGUFFileSource
from modelkit.build.sources.gguf_folder import GGUFFolderSource
from modelkit.build.sources.hf_folder import HFFolderSource
from modelkit.build.sources.local_model import LocalModelSource
from modelkit.build.sources.registry_model import PullOptions, RegistryModelSource, WouldPull
from modelkit.errors import BuildError
from modelkit.store import Store

__all__ = [
    "BaseFile",
    "FromRef",
    "HFFolderSource",
    "PullOptions",
    "RegistryModelSource",
    "ResolvedBase",
    "Source",
    "WouldPull",
    "default_sources",
    "resolve_from",
]


def default_sources(store: Store, *, pull: PullOptions | None = None) -> list[Source]:
    """Paths first, as in Ollama: a FROM that names an existing path is a path, else a name.

    Without ``pull`` a name must be in the store; with it, a name missing there (or every name,
    with ``pull.refresh``) is pulled from its registry first. A safetensors folder is converted
    (cached under the store), its progress sent to ``pull.progress`` when there is one.
    """
    names: Source = LocalModelSource(store) if pull is None else RegistryModelSource(store, pull)
    hf = HFFolderSource(store, progress=pull.progress if pull is not None else None)
    return [GGUFFileSource(), hf, GGUFFolderSource(), names]


def resolve_from(ref: FromRef, sources: list[Source]) -> ResolvedBase:
    for source in sources:
        if source.claims(ref):
            return source.resolve(ref)
    raise BuildError(f"FROM {ref.raw}: no source can resolve it")
