"""What to build, independent of how it was asked for: a Modelfile (``spec_from_modelfile``)
or an ``/api/create`` request both become a ``BuildSpec`` that the planner reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelkit.build.paths import existing_path, expand_path
from modelkit.build.sources import FromRef, ResolvedBase
from modelkit.modelfile import Modelfile, typed_parameters


@dataclass(frozen=True)
class LocatedRef:
    """A FROM value with the Modelfile line it came from (0 when not from a file)."""

    ref: FromRef
    line: int = 0


@dataclass(frozen=True)
class LocalFile:
    """An ADAPTER or DRAFT file: its expanded path, the text as written, its line."""

    path: Path
    raw: str
    line: int = 0
    key: str = ""


@dataclass
class BuildSpec:
    froms: list[LocatedRef] = field(default_factory=list)
    base: ResolvedBase | None = None  # a base already resolved (``/api/create`` files)
    adapters: list[LocalFile] = field(default_factory=list)
    drafts: list[LocalFile] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[tuple[str, str]] = field(default_factory=list)
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None
    quantize: str | None = None
    """``--quantize`` / ``quantize``: the model layer's type to quantize to (``Q4_K_M``...)."""
    source: str = ""
    """The Modelfile's path, for error messages (empty when it is not a file)."""


def modelfile_dir(modelfile: Modelfile) -> Path:
    if modelfile.path.startswith("<"):
        return Path.cwd()
    return Path(modelfile.path).absolute().parent


def spec_from_modelfile(modelfile: Modelfile) -> BuildSpec:
    base_dir = modelfile_dir(modelfile)
    return BuildSpec(
        froms=[
            LocatedRef(FromRef(i.value, existing_path(i.value, base_dir)), i.pos.line)
            for i in modelfile.froms
        ],
        # Ollama keeps only the last ADAPTER.
        adapters=[
            LocalFile(expand_path(a.path, base_dir), a.path, a.pos.line)
            for a in modelfile.adapters[-1:]
        ],
        drafts=[
            LocalFile(expand_path(d.path, base_dir), d.path, d.pos.line) for d in modelfile.drafts
        ],
        template=modelfile.template,
        system=modelfile.system,
        licenses=modelfile.licenses,
        parameters=dict(typed_parameters(modelfile)),
        messages=[(m.role, m.content) for m in modelfile.messages],
        requires=modelfile.requires,
        renderer=modelfile.renderer,
        parser=modelfile.parser,
        source="" if modelfile.path.startswith("<") else modelfile.path,
    )
