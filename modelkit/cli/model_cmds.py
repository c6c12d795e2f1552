"""``modelkit list/show/cp/rm/prune``: managing models in the store, as Ollama's CLI does."""

from __future__ import annotations

import click

from modelkit.build import BuildCache
from modelkit.build.show import show_capabilities, show_modelfile, show_parameters
from modelkit.cli.humanize import human_bytes, human_time, table
from modelkit.config import Settings
from modelkit.errors import ModelNotFoundError
from modelkit.names import ModelName
from modelkit.runtime.prompting import ChatTemplate
from modelkit.store import Descriptor, GGUFInfo, ModelView, Store, read_gguf_info, view_model


def _store() -> Store:
    return Store(Settings.from_env().models)


def _view(store: Store, name: str) -> ModelView:
    try:
        return view_model(store, ModelName.parse(name))
    except ModelNotFoundError:
        raise ModelNotFoundError(f"model '{name}' not found") from None


@click.command("list")
@click.argument("prefix", required=False, default="")
def list_models(prefix: str) -> None:
    """List the models in the store (newest first)."""
    store = _store()
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    models = sorted(store.list_models(), key=lambda m: m.modified, reverse=True)
    for m in models:
        if not m.name.display.lower().startswith(prefix.lower()):
            continue
        rows.append([m.name.display, m.digest[:12], human_bytes(m.size), human_time(m.modified)])
    click.echo(table(rows))


def _gguf_info(store: Store, desc: Descriptor | None) -> GGUFInfo | None:
    if desc is None:
        return None
    cache = BuildCache.for_store(store.root)
    info = cache.gguf_info(desc.digest)
    return info if info is not None else read_gguf_info(store.blob_path(desc.digest))


def _projector_rows(info: GGUFInfo) -> list[list[str]]:
    """Ollama's Projector section: each row only when its key is there."""
    rows = [["architecture", info.architecture], ["parameters", info.human_parameter_count]]
    for suffix, label in (
        ("embedding_length", "embedding length"),
        ("projection_dim", "dimensions"),
    ):
        for modality in ("vision", "audio"):
            value = info.metadata.get(f"{info.architecture}.{modality}.{suffix}")
            if isinstance(value, int) and not isinstance(value, bool):
                rows.append([label, str(value)])  # GGUF stores these as integers
                break
    return rows


def _first_lines(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [*lines[:2], "..."] if len(lines) > 2 else lines


def _summary(store: Store, view: ModelView) -> str:
    info = _gguf_info(store, view.model)
    rows = [["architecture", view.config.model_family or "unknown"]]
    rows.append(["parameters", view.config.model_type or "unknown"])
    if info is not None and info.context_length:
        rows.append(["context length", str(info.context_length)])
    if info is not None and info.embedding_length:
        rows.append(["embedding length", str(info.embedding_length)])
    rows.append(["quantization", view.config.file_type or "unknown"])
    if view.config.requires:
        rows.append(["requires", view.config.requires])
    out = ["  Model", _indent(table(rows))]
    capabilities = show_capabilities(view, ChatTemplate.for_stored_model(store, view).capabilities)
    out += ["", "  Capabilities", _indent("\n".join(capabilities))]
    if view.projectors:
        # Its key/values are needed, which the build cache does not keep: read the header.
        projector = read_gguf_info(store.blob_path(view.projectors[0].digest), max_array_len=0)
        out += ["", "  Projector", _indent(table(_projector_rows(projector)))]
    if view.parameters:
        out += ["", "  Parameters", _indent(show_parameters(view.parameters))]
    if view.system:
        out += ["", "  System", _indent("\n".join(_first_lines(view.system)))]
    if view.licenses:
        out += ["", "  License", _indent("\n".join(_first_lines("\n".join(view.licenses))))]
    return "\n".join(out) + "\n"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


@click.command()
@click.argument("name")
@click.option("--modelfile", "part", flag_value="modelfile", help="Show the Modelfile.")
@click.option("--parameters", "part", flag_value="parameters", help="Show the parameters.")
@click.option("--template", "part", flag_value="template", help="Show the template.")
@click.option("--system", "part", flag_value="system", help="Show the system prompt.")
@click.option("--license", "part", flag_value="license", help="Show the license.")
def show(name: str, part: str | None) -> None:
    """Show information about a model."""
    store = _store()
    view = _view(store, name)
    if part == "modelfile":
        click.echo(show_modelfile(view, store), nl=False)
    elif part == "parameters":
        click.echo(show_parameters(view.parameters))
    elif part == "template":
        # What serving uses: the TEMPLATE layer, else the GGUF's own chat template.
        click.echo(ChatTemplate.for_stored_model(store, view).text)
    elif part == "system":
        click.echo(view.system or "")
    elif part == "license":
        click.echo("\n".join(view.licenses))
    else:
        click.echo(_summary(store, view))


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model (the manifest; blobs are shared)."""
    store = _store()
    src = ModelName.parse(source)
    dst = ModelName.parse(destination)
    with store.lock():
        try:
            store.copy(store.resolve_name(src), dst)
        except ModelNotFoundError:
            raise ModelNotFoundError(f'model "{source}" not found') from None
    click.echo(f"copied '{source}' to '{destination}'")


@click.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove models (and the blobs no other model uses)."""
    store = _store()
    for name in names:
        try:
            store.delete(store.resolve_name(ModelName.parse(name)))
        except ModelNotFoundError:
            raise ModelNotFoundError(f"model '{name}' not found") from None
        click.echo(f"deleted '{name}'")


@click.command()
def prune() -> None:
    """Remove blobs that no model references (skipped when OLLAMA_NOPRUNE is set)."""
    settings = Settings.from_env()
    if settings.noprune:
        click.echo("OLLAMA_NOPRUNE is set: not pruning")
        return
    store = Store(settings.models)
    removed = store.prune()
    for digest in removed:
        click.echo(f"removed {digest}")
    click.echo(f"pruned {len(removed)} blob(s)")
