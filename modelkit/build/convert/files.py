"""Which files of a Hugging Face model folder a build uses: Ollama's ``filesForModel`` rules
for safetensors folders (weights, then every JSON, chat template and tokenizer.model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelkit.errors import BuildError

NO_FILES = "no Modelfile or safetensors files found"


@dataclass(frozen=True)
class Selection:
    """The selected files of ``folder``: weights first, then the rest, as (key, path) pairs."""

    folder: Path
    weights: tuple[Path, ...]
    others: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return self.weights + self.others

    def key(self, path: Path) -> str:
        """The slash-separated name of ``path`` below the folder (Ollama's file key)."""
        return str(PurePosixPath(*path.relative_to(self.folder).parts))

    @property
    def top_weights(self) -> tuple[Path, ...]:
        """The weights of the model itself: the folder's own, else those one level down
        (sentence-transformers' ``2_Dense/`` heads are selected but not converted)."""
        top = tuple(p for p in self.weights if p.parent == self.folder)
        return top or self.weights


def has_safetensors_weights(folder: Path) -> bool:
    """Whether ``folder`` holds weights that the first two discovery rules select."""
    return bool(_weights(folder))


def _glob(folder: Path, *patterns: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def _weights(folder: Path) -> list[Path]:
    return _glob(folder, "model*.safetensors", "*/model*.safetensors") or _glob(
        folder, "consolidated*.safetensors"
    )


def _checked(folder: Path, path: Path) -> Path:
    rel = path.relative_to(folder)
    if not path.resolve().is_relative_to(folder):
        hint = ""
        if ".cache" in rel.parts or ".cache" in path.resolve().parts:
            hint = " (a Hugging Face cache links its files elsewhere; download with --local-dir)"
        raise BuildError(f"insecure path: {PurePosixPath(*rel.parts)}{hint}")
    return path


def _is_text(path: Path) -> bool:
    return b"\x00" not in _head(path)


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(512)


def select_files(folder: Path) -> Selection:
    """Ollama's discovery for a safetensors folder; raises :class:`BuildError` when it has no
    weights, when a file resolves outside it, or when a JSON file is not text."""
    folder = folder.resolve()
    weights = [_checked(folder, p) for p in _weights(folder)]
    if not weights:
        raise BuildError(NO_FILES)
    others: list[Path] = []
    for path in _glob(folder, "*.json", "*/*.json"):
        _checked(folder, path)
        if not _is_text(path):
            rel = PurePosixPath(*path.relative_to(folder).parts)
            raise BuildError(f"invalid content type: expected application/octet-stream for {rel}")
        others.append(path)
    for path in _glob(folder, "chat_template.jinja", "tokenizer.model", "*/tokenizer.model"):
        others.append(_checked(folder, path))
    return Selection(folder=folder, weights=tuple(weights), others=tuple(others))
