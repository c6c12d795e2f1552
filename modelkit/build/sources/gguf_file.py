"""FROM a single local file: a GGUF model (safetensors files get a clear "not supported yet")."""

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
                f"{ref.raw}: safetensors models are not supported yet; "
                "convert it to GGUF (llama.cpp's convert_hf_to_gguf.py) and FROM the .gguf"
            )
        if not is_gguf(path):
            raise BuildError(f"{ref.raw}: supplied file was not in GGUF format")
        return ResolvedBase(description=f"GGUF file {path}", files=[BaseFile(path.name, path)])
