"""FROM a folder of GGUF files: Ollama's file discovery after its safetensors rules (a folder
with safetensors weights is claimed first by :mod:`.hf_folder`)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from modelkit.build.sources.base import BaseFile, FromRef, ResolvedBase
from modelkit.errors import BuildError
from modelkit.store import is_gguf


def _keys_for(paths: list[Path], folder: Path) -> list[BaseFile]:
    """Ollama names one file by its base name, several by their path below the folder."""
    if len(paths) == 1:
        return [BaseFile(paths[0].name, paths[0])]
    return [BaseFile(str(PurePosixPath(*p.relative_to(folder).parts)), p) for p in paths]


class GGUFFolderSource:
    name = "folder"

    def claims(self, ref: FromRef) -> bool:
        return ref.path is not None and ref.path.is_dir()

    def resolve(self, ref: FromRef) -> ResolvedBase:
        assert ref.path is not None
        folder = ref.path.resolve()
        if any(folder.glob("pytorch_model*.bin")) or any(folder.glob("consolidated*.pth")):
            raise BuildError(f"{ref.raw}: PyTorch checkpoints are not supported; convert to GGUF")
        candidates = sorted(folder.glob("*.gguf")) or sorted(folder.glob("*.bin"))
        ggufs = [p for p in candidates if p.is_file() and is_gguf(p)]
        for path in ggufs:
            if not path.resolve().is_relative_to(folder):
                raise BuildError(f"insecure path: {path.relative_to(folder)}")
        if not ggufs:
            raise BuildError(f"{ref.raw}: no Modelfile or safetensors files found")
        files = _keys_for([p.resolve() for p in ggufs], folder)
        return ResolvedBase(description=f"GGUF folder {folder}", files=files)
