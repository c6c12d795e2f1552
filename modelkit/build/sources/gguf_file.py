"""FROM a single local file: a GGUF model. A lone .safetensors file is refused: converting
needs its folder (config.json, tokenizer.json), which FROM names instead."""

from __future__ import annotations

from modelkit.build.sources.base import BaseFile, FromRef, ResolvedBase
from modelkit.errors import BuildError
from modelkit.store import is_gguf


class GGUFFileSource:
    name = "file"

    def claims(self, ref: FromRef) -> bool:
        return ref.path is not None and ref.path.is_file()

    def resolve(self, ref: FromRef) -> ResolvedBase:
        assert ref.path is not None
        path = ref.path.resolve()
        if path.suffix == ".safetensors":
            raise BuildError(
                f"{ref.raw}: a single safetensors file cannot be converted; FROM the folder "
                f"that holds it with its config.json and tokenizer.json ({path.parent})"
            )
        if not is_gguf(path):
            raise BuildError(f"{ref.raw}: supplied file was not in GGUF format")
        return ResolvedBase(description=f"GGUF file {path}", files=[BaseFile(path.name, path)])
