"""Planning a build: resolve FROM through a source, then decide every layer (inherited,
cached or new) and the config, without writing anything. ``execute`` carries a plan out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelkit.build.cache import BuildCache, FileStamp
from modelkit.build.layers import (
    PlannedLayer,
    messages_bytes,
    params_bytes,
    text_layer,
)
from modelkit.build.quantize import QuantizeStep, parse_quant_type, plan_quantize
from modelkit.build.sources import ResolvedBase, Source, default_sources, resolve_from
from modelkit.build.spec import BuildSpec, LocalFile, spec_from_modelfile
from modelkit.errors import BuildError
from modelkit.modelfile import Modelfile
from modelkit.store import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    GGUFInfo,
    ModelConfig,
    Store,
    digest_from_filename,
    file_type_name,
    read_gguf_info,
)
from modelkit.template import template_error

EMPTY_DIGEST = "sha256:" + "0" * 64


@dataclass
class BuildPlan:
    """Everything a build will write, in manifest order, plus the config blob."""

    spec: BuildSpec
    base: ResolvedBase
    layers: list[PlannedLayer]
    config: ModelConfig
    notes: list[str] = field(default_factory=list)
    quantize: QuantizeStep | None = None
    """The model layer's quantization; ``layers[quantize.index]`` is its planned result."""

    @property
    def new_bytes(self) -> int:
        return sum(layer.size for layer in self.layers if layer.status == "new")


class LocatedBuildError(BuildError):
    """A BuildError already prefixed with the Modelfile line it comes from."""


class Planner:
    """Builds a ``BuildPlan`` for one Modelfile against one store."""

    def __init__(self, store: Store, cache: BuildCache, sources: list[Source] | None = None):
        self.store = store
        self.cache = cache
        self.sources = sources if sources is not None else default_sources(store)
        self._source = ""

    # -- FROM -------------------------------------------------------------------------------

    def resolve_base(self, spec: BuildSpec) -> ResolvedBase:
        if spec.base is not None:
            return spec.base
        resolved = [
            self._located(item.line, lambda r=item.ref: resolve_from(r, self.sources))
            for item in spec.froms
        ]
        if not resolved:
            raise BuildError("no FROM line")
        parents = [r for r in resolved if r.parent is not None]
        if parents:
            # As in Ollama: a FROM naming a model wins over local files.
            return parents[-1]  # type: ignore[no-any-return]
        files = [f for r in resolved for f in r.files]
        return ResolvedBase(description=", ".join(r.description for r in resolved), files=files)

    def _located(self, line: int, action: Any) -> Any:
        try:
            return action()
        except LocatedBuildError:
            raise
        except BuildError as err:
            if line:
                raise LocatedBuildError(
                    self._where(line) + str(err) + self._show_line(line)
                ) from None
            raise

    def _where(self, line: int) -> str:
        # ``path:line:`` like a Modelfile syntax error when the Modelfile is a file
        # (``/api/create`` bodies have no path).
        return f"{self._source}:{line}: " if self._source else f"line {line}: "

    def _show_line(self, line: int) -> str:
        if not self._source:
            return ""
        try:
            text = Path(self._source).read_text(encoding="utf-8", errors="replace")
            return "\n    " + text.splitlines()[line - 1]
        except (OSError, IndexError):
            return ""

    # -- file layers ------------------------------------------------------------------------

    def file_layer(self, path: Path, key: str, media_type: str | None = None) -> PlannedLayer:
        """A layer for a local GGUF; the digest comes from the cache when the file is unchanged."""
        path = path.resolve()
        stamp = FileStamp.of(path)
        digest = self.cache.digest_for(path, stamp) or self._blob_digest(path)
        info = self.cache.gguf_info(digest) if digest else None
        if info is None:
            info = read_gguf_info(path)
        if media_type is None:
            media_type = _media_type_for(info)
        in_store = digest is not None and self.store.has_blob(digest)
        if (
            in_store
            and digest is not None
            and self.store.blob_path(digest).stat().st_size != stamp.size
        ):
            in_store = False
        return PlannedLayer(
            media_type=media_type,
            source=str(path),
            status="cached" if in_store else "new",
            digest=digest,
            size=stamp.size,
            from_=key,
            path=path,
            gguf=info,
        )

    def _blob_digest(self, path: Path) -> str | None:
        """A FROM that points at a blob of this store (``show --modelfile`` writes those):
        its name is its digest, verified when it was written."""
        if path.parent != self.store.blob_path(EMPTY_DIGEST).parent:
            return None
        return digest_from_filename(path.name)

    def inherited_layers(self, base: ResolvedBase) -> list[PlannedLayer]:
        assert base.parent is not None
        layers = []
        for desc in base.parent.manifest.layers:
            if not self.store.has_blob(desc.digest):
                raise BuildError(
                    f"model {base.parent_name} is missing blob {desc.digest}; pull or rebuild it"
                )
            layers.append(
                PlannedLayer(
                    media_type=desc.media_type,
                    source=f"{base.parent_name}",
                    status="inherited",
                    digest=desc.digest,
                    size=desc.size,
                    from_=base.parent_name,
                )
            )
        return layers

    # -- the whole plan ---------------------------------------------------------------------

    def plan(self, spec: BuildSpec | Modelfile) -> BuildPlan:
        if isinstance(spec, Modelfile):
            spec = spec_from_modelfile(spec)
        self._source = spec.source
        base = self.resolve_base(spec)
        if base.parent is not None:
            layers = self.inherited_layers(base)
        else:
            ordered = sorted(base.files, key=lambda f: f.key)
            layers = [self.file_layer(f.path, f.key) for f in ordered]
        layers += [self._located(a.line, lambda a=a: self.adapter_layer(a)) for a in spec.adapters]
        layers += self.draft_layers(spec, base)
        layers = self.merge_text_layers(layers, spec)
        config = self.config_for(layers, base, spec)
        step = self.quantize_step(layers, spec)
        if step is not None:
            layers[step.index] = step.output(step.cached, "cached" if step.cached else "new", None)
            config = replace(config, file_type=file_type_name(step.target.file_type))
        return BuildPlan(spec=spec, base=base, layers=layers, config=config, quantize=step)

    def quantize_step(self, layers: list[PlannedLayer], spec: BuildSpec) -> QuantizeStep | None:
        """Ollama quantizes the model layer, wherever it comes from (a file, a model)."""
        if not spec.quantize:
            return None
        target = parse_quant_type(spec.quantize)
        models = [i for i, x in enumerate(layers) if x.media_type == MEDIA_TYPE_MODEL]
        if len(models) != 1:
            raise BuildError("quantizing a model split over several GGUF files is not supported")
        return plan_quantize(models[0], layers[models[0]], self.store, self.cache, target)

    def adapter_layer(self, adapter: LocalFile) -> PlannedLayer:
        path = adapter.path
        if not path.exists():
            raise BuildError(f"ADAPTER {adapter.raw}: no such file ({path})")
        if path.is_dir() or path.suffix == ".safetensors":
            raise BuildError(
                f"ADAPTER {adapter.raw}: safetensors adapters are not supported yet; "
                "convert the LoRA to GGUF (llama.cpp's convert_lora_to_gguf.py)"
            )
        layer = self.file_layer(path, adapter.key or path.name, MEDIA_TYPE_ADAPTER)
        if layer.gguf is not None and not layer.gguf.is_adapter:
            raise BuildError(f"ADAPTER {adapter.raw}: the GGUF is not a LoRA adapter")
        return layer

    def draft_layers(self, spec: BuildSpec, base: ResolvedBase) -> list[PlannedLayer]:
        layers: list[PlannedLayer] = []
        from_paths = {f.path.resolve() for f in base.files}
        for draft in spec.drafts:

            def build(draft: LocalFile = draft) -> list[PlannedLayer]:
                path = draft.path
                if not path.exists():
                    raise BuildError(f"DRAFT {draft.raw}: no such file ({path})")
                found = [path] if path.is_file() else sorted(path.glob("*.gguf"))
                if any(p.resolve() in from_paths for p in found):
                    raise BuildError(
                        f"DRAFT must not reference the same local path as FROM: {path}"
                    )
                if not found:
                    raise BuildError(f"DRAFT {draft.raw}: no GGUF files found")
                return [self.file_layer(p, p.name, MEDIA_TYPE_DRAFT) for p in found]

            layers += self._located(draft.line, build)
        return layers

    def merge_text_layers(self, layers: list[PlannedLayer], mf: BuildSpec) -> list[PlannedLayer]:
        """Ollama's merge: a child's template/system/messages replace the parent's, licenses
        add up, parameters merge over the parent's (in that order of layers)."""
        has = self.store.has_blob
        if mf.template:
            error = template_error(mf.template)
            if error is not None:
                raise BuildError(f"template error: {error}")
            layers = [x for x in layers if x.media_type != MEDIA_TYPE_TEMPLATE]
            layers.append(text_layer(MEDIA_TYPE_TEMPLATE, mf.template.encode(), "TEMPLATE", False))
        if mf.system:
            layers = [x for x in layers if x.media_type != MEDIA_TYPE_SYSTEM]
            layers.append(text_layer(MEDIA_TYPE_SYSTEM, mf.system.encode(), "SYSTEM", False))
        for text in mf.licenses:
            layers.append(text_layer(MEDIA_TYPE_LICENSE, text.encode(), "LICENSE", False))
        inherited_params: dict[str, Any] = {}
        for layer in layers:
            if layer.media_type == MEDIA_TYPE_PARAMS and layer.digest:
                inherited_params.update(self._read_json_blob(layer.digest))
        params = {**inherited_params, **mf.parameters}
        layers = [x for x in layers if x.media_type != MEDIA_TYPE_PARAMS]
        if params:
            layers.append(text_layer(MEDIA_TYPE_PARAMS, params_bytes(params), "PARAMETER", False))
        if mf.messages:
            layers = [x for x in layers if x.media_type != MEDIA_TYPE_MESSAGES]
            data = messages_bytes(mf.messages)
            layers.append(text_layer(MEDIA_TYPE_MESSAGES, data, "MESSAGE", False))
        return [
            replace(x, status="cached") if x.data is not None and x.digest and has(x.digest) else x
            for x in layers
        ]

    def _read_json_blob(self, digest: str) -> dict[str, Any]:
        try:
            value = json.loads(self.store.blob_path(digest).read_bytes())
        except (OSError, ValueError) as err:
            raise BuildError(f"cannot read inherited parameters {digest}: {err}") from None
        if not isinstance(value, dict):
            raise BuildError(f"inherited parameters {digest} are not a JSON object")
        return value

    # -- config -----------------------------------------------------------------------------

    def model_info(self, layer: PlannedLayer) -> GGUFInfo:
        if layer.gguf is not None:
            return layer.gguf
        assert layer.digest is not None
        info = self.cache.gguf_info(layer.digest)
        if info is None:
            info = read_gguf_info(self.store.blob_path(layer.digest))
            self.cache.remember_gguf(layer.digest, info)
        return info

    def config_for(
        self, layers: list[PlannedLayer], base: ResolvedBase, mf: BuildSpec
    ) -> ModelConfig:
        models = [x for x in layers if x.media_type == MEDIA_TYPE_MODEL]
        if not models:
            raise BuildError("the build has no model layer: FROM must name a GGUF model")
        config = ModelConfig.from_gguf(self.model_info(models[0]))
        parent = base.parent_config
        return replace(
            config,
            renderer=mf.renderer or (parent.renderer if parent else ""),
            parser=mf.parser or (parent.parser if parent else ""),
            requires=mf.requires or (parent.requires if parent else ""),
            capabilities=parent.capabilities if parent else config.capabilities,
        )


def _media_type_for(info: GGUFInfo) -> str:
    if info.is_adapter:
        return MEDIA_TYPE_ADAPTER
    if info.is_projector:
        return MEDIA_TYPE_PROJECTOR
    return MEDIA_TYPE_MODEL


def plan_build(
    spec: BuildSpec | Modelfile,
    store: Store,
    cache: BuildCache,
    sources: list[Source] | None = None,
) -> BuildPlan:
    return Planner(store, cache, sources).plan(spec)
