"""FROM a model already in the store: its layers are inherited (re-referenced, not copied)."""

from __future__ import annotations

from modelkit.build.sources.base import FromRef, ResolvedBase
from modelkit.errors import BuildError, ModelNameError, ModelNotFoundError
from modelkit.names import ModelName
from modelkit.store import ModelConfig, Store


class LocalModelSource:
    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    def claims(self, ref: FromRef) -> bool:
        return ref.path is None

    def resolve(self, ref: FromRef) -> ResolvedBase:
        try:
            name = ModelName.parse(ref.raw)
        except ModelNameError as err:
            if _looks_like_path(ref.raw):
                raise BuildError(f"FROM {ref.raw}: no such file or directory") from None
            raise BuildError(f"FROM {ref.raw}: not a path and {err}") from None
        try:
            stored = self.store.read_manifest(self.store.resolve_name(name))
        except ModelNotFoundError:
            raise BuildError(
                f'FROM {ref.raw}: model "{name.display}" not found in the store at '
                f"{self.store.root} (and it is not a path next to the Modelfile)"
            ) from None
        config = ModelConfig.from_bytes(
            self.store.blob_path(stored.manifest.config.digest).read_bytes()
        )
        return ResolvedBase(
            description=f"model {stored.name.display}",
            parent=stored,
            parent_name=stored.name.display,
            parent_config=config,
        )


def _looks_like_path(raw: str) -> bool:
    return raw.startswith((".", "/", "~", "\\")) or raw.endswith((".gguf", ".bin", ".safetensors"))
