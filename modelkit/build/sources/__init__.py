"""Where FROM can come from: each source is one module; ``resolve_from`` asks them in order."""

from __future__ import annotations

from modelkit.build.sources.base import BaseFile, FromRef, ResolvedBase, Source
from modelkit.build.sources.gguf_file import GGUFFileSource
from modelkit.build.sources.gguf_folder import GGUFFolderSource
from modelkit.build.sources.local_model import LocalModelSource
from modelkit.errors import BuildError
from modelkit.store import Store

__all__ = ["BaseFile", "FromRef", "ResolvedBase", "Source", "default_sources", "resolve_from"]


def default_sources(store: Store) -> list[Source]:
    # Paths first, as in Ollama: a FROM that names an existing path is a path, else a name.
    return [GGUFFileSource(), GGUFFolderSource(), LocalModelSource(store)]


def resolve_from(ref: FromRef, sources: list[Source]) -> ResolvedBase:
    for source in sources:
        if source.claims(ref):
            return source.resolve(ref)
    raise BuildError(f"FROM {ref.raw}: no source can resolve it")
