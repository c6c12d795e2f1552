"""``modelkit build`` / ``create`` (Ollama's spelling) and ``modelkit lint``."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from modelkit.build import BuildCache, BuildPlan, CheckFn, execute_build, plan_build
from modelkit.build.quantize import parse_quant_type
from modelkit.build.sources import PullOptions, WouldPull, default_sources
from modelkit.build.spec import spec_from_modelfile
from modelkit.cli.humanize import human_bytes, table
from modelkit.cli.options import jobs_option
from modelkit.cli.progress import byte_progress, registry_progress
from modelkit.config import Settings
from modelkit.modelfile import parse_file
from modelkit.names import ModelName
from modelkit.store import Store
from modelkit.validate.buildcheck import BuildCheck, SmokeResult
from modelkit.validate.lint import lint_text
from modelkit.validate.sarif import to_sarif

if TYPE_CHECKING:  # importing these only to name types costs ~0.3 s
    from modelkit.image import ImageRef, Output
    from modelkit.registry import ProgressFn
    from modelkit.validate.runner import CaseResult


def _short_media_type(media_type: str) -> str:
    return media_type.rsplit(".", 1)[-1]


def format_plan(plan: BuildPlan, name: ModelName) -> str:
    rows = [["LAYER", "STATUS", "DIGEST", "SIZE", "SOURCE"]]
    for layer in plan.layers:
        digest = layer.digest[7:19] if layer.digest else "(to hash)"
        rows.append(
            [
                _short_media_type(layer.media_type),
                layer.status,
                digest,
                human_bytes(layer.size),
                layer.source,
            ]
        )
    config = plan.config.to_bytes()
    lines = [
        f"plan for {name.display}: FROM {plan.base.description}",
        table(rows),
        f"config: {plan.config.model_family} {plan.config.model_type} {plan.config.file_type}"
        f" ({len(config)} bytes)",
        f"new data to write: {human_bytes(plan.new_bytes)}",
    ]
    if plan.quantize is not None:
        lines.insert(2, plan.quantize.describe())
    return "\n".join(lines)


def format_would_pull(would: WouldPull, name: ModelName) -> str:
    return "\n".join(
        [
            f"plan for {name.display}: FROM {would.name}",
            f"would pull {would.name} from {would.host}"
            f" ({would.layers} layers, {human_bytes(would.size)}; manifest checked, nothing"
            " pulled)",
            "the layers are planned after the pull; run without --dry-run to build",
        ]
    )


def describe_smoke(result: SmokeResult) -> str:
    if result.skipped:
        return f"smoke check skipped: {result.skipped}"
    if result.cached:
        return "smoke check: passed before for this exact model"
    if result.embedding:
        return (
            f"smoke check passed: loaded and embedded a text in {result.load_seconds:.2f}s"
            f" ({result.embedding} dimensions)"
        )
    return (
        f"smoke check passed: loaded and answered in {result.load_seconds:.2f}s"
        f" ({result.prompt_tokens} prompt tokens, {result.generated} generated:"
        f" {json.dumps(result.text, ensure_ascii=False)})"
    )


def build_check(
    settings: Settings,
    console: Console,
    *,
    smoke: bool,
    test_spec: str | None,
    jobs: int,
    quiet: bool,
) -> CheckFn | None:
    """The check to run before the tag is written, or None (``--no-check`` and no spec)."""
    spec = None
    if test_spec is not None:
        # Only now: the spec reader and runner pull in jsonschema and httpx (~0.15 s).
        from modelkit.validate.spec import SpecError, load_spec

        try:
            spec = load_spec(Path(test_spec))
        except SpecError as err:
            raise click.ClickException("\n".join(err.lines())) from None
        if spec.model or spec.modelfile:
            click.echo(
                f"note: --test runs {test_spec} on the model being built; its"
                f" {'model' if spec.model else 'modelfile'}: is not used",
                err=True,
            )
    if not smoke and spec is None:
        return None

    # Through the console: a progress bar may still be drawn on it.
    def on_smoke(result: SmokeResult) -> None:
        if not quiet or result.skipped:
            console.print(describe_smoke(result), markup=False, highlight=False, soft_wrap=True)

    def on_spec(model: str, results: list[CaseResult]) -> None:
        from modelkit.validate.reports import summary

        console.print(summary(results, model), markup=False, highlight=False, soft_wrap=True)

    return BuildCheck(
        settings, smoke=smoke, spec=spec, jobs=jobs, on_smoke=on_smoke, on_spec=on_spec
    )


def run_build(
    modelfile: str,
    tag: str,
    *,
    dry_run: bool = False,
    quiet: bool = False,
    pull: bool = False,
    insecure: bool = False,
    no_check: bool = False,
    test_spec: str | None = None,
    jobs: int = 1,
    quantize: str | None = None,
) -> ModelName | None:
    """Build ``tag`` (returns its name; None for a dry run). A FROM name missing locally is
    pulled from its registry (``pull``: also one present locally); a dry run only checks that
    the registry has it. ``quantize`` is the model layer's type (``Q4_K_M``...). Before the
    tag is written the model is smoke-checked (unless ``no_check``) and ``test_spec`` run."""
    if quantize:
        parse_quant_type(quantize)  # a wrong type fails before anything is pulled
    settings = Settings.from_env()
    err = Console(stderr=True)
    check = build_check(
        settings, err, smoke=not no_check, test_spec=test_spec, jobs=jobs, quiet=quiet
    )
    parsed = parse_file(modelfile)
    for warning in parsed.warnings:
        click.echo(f"warning: {warning.message}", err=True)
    spec = replace(spec_from_modelfile(parsed), quantize=quantize or None)
    name = ModelName.parse(tag)
    store = Store(settings.models)
    cache = BuildCache.for_store(store.root)
    display: AbstractContextManager[ProgressFn | None] = nullcontext(None)
    if not quiet and not dry_run:
        display = registry_progress(err)
    with display as show:
        options = PullOptions(
            insecure=insecure,
            refresh=pull,
            dry_run=dry_run,
            prune=not settings.noprune,
            progress=show,
        )
        try:
            plan = plan_build(spec, store, cache, default_sources(store, pull=options))
        except WouldPull as would:
            click.echo(format_would_pull(would, name))
            return None
    if dry_run:
        click.echo(format_plan(plan, name))
        return None
    with byte_progress(err, enabled=not quiet) as progress:
        result = execute_build(
            plan, name, store, cache, noprune=settings.noprune, progress=progress, check=check
        )
    if not quiet:
        for layer in result.layers:
            verb = "creating new layer" if layer.status == "new" else "using existing layer"
            click.echo(f"{verb} {layer.digest}", err=True)
        click.echo("writing manifest", err=True)
        click.echo("success", err=True)
    click.echo(f"{result.name.display} {result.stored.digest[:12]}")
    return result.name


MODELFILE_OPTION = click.option(
    "-f",
    "--file",
    "modelfile",
    default="Modelfile",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The Modelfile to build (relative FROM/ADAPTER paths resolve against its folder).",
)

# The options ``build`` and ``create`` share; their names are run_build's parameters.
BUILD_OPTIONS = [
    MODELFILE_OPTION,
    click.option("--dry-run", is_flag=True, help="Print the plan (cached and new layers) only."),
    click.option(
        "-q",
        "--quantize",
        metavar="TYPE",
        help="Quantize the model layer (from F16, BF16 or F32) with llama.cpp, as `ollama"
        " create -q`: F32, F16, BF16, Q8_0, Q4_K_S, Q4_K_M (alias Q4_K); cached per source"
        " and type.",
    ),
    click.option("--quiet", is_flag=True, help="No progress output."),
    click.option(
        "--pull", is_flag=True, help="Pull a FROM model from its registry even when it is local."
    ),
    click.option("--insecure", is_flag=True, help="Use plain HTTP for a non-loopback registry."),
    click.option(
        "--no-check",
        is_flag=True,
        envvar="MODELKIT_NO_CHECK",
        help="Skip the smoke check (load, render the template, generate a few tokens);"
        " also MODELKIT_NO_CHECK=1, e.g. on a machine that builds and pushes models too big"
        " to load.",
    ),
    click.option(
        "--test",
        "test_spec",
        type=click.Path(dir_okay=False),
        help="Run this test spec on the model before tagging it; a failing case fails the build.",
    ),
    jobs_option("--test cases to run at once."),
]


def build_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(BUILD_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class ImageRequest:
    """``build --image``: the model image to assemble once the build succeeded."""

    ref: ImageRef
    runtime: str
    outputs: tuple[Output, ...]
    push: bool
    load: bool
    insecure: bool

    @classmethod
    def from_options(
        cls,
        image: str | None,
        runtime: str | None,
        outputs: tuple[str, ...],
        push: bool,
        load: bool,
        insecure: bool,
    ) -> ImageRequest | None:
        """Checked before anything is built; None without ``--image``."""
        if image is None:
            if runtime or outputs or push or load:
                raise click.UsageError(
                    "--runtime, --image-output, --push-image and --load-image go with --image"
                )
            return None
        if runtime is None:
            raise click.UsageError("--image needs --runtime RUNTIME_IMAGE")
        if not (outputs or push or load):
            raise click.UsageError("--image needs --image-output, --push-image or --load-image")
        from modelkit.image import ImageRef, parse_output  # the registry stack: only now

        return cls(
            ImageRef.parse(image),
            runtime,
            tuple(parse_output(o) for o in outputs),
            push,
            load,
            insecure,
        )

    def ship(self, name: ModelName, *, quiet: bool) -> None:
        """Assemble the model image and write, push and/or load it."""
        from modelkit.image import assemble, load, push, write

        console = Console(stderr=True, quiet=quiet)
        with (
            registry_progress(console) as show,
            assemble(
                Store(Settings.from_env().models),
                name,
                base=self.runtime,
                # The image serves this one model: load it at start-up, so that the image's
                # HEALTHCHECK (/readyz) turns healthy once it can answer.
                env={"MODELKIT_PRELOAD": name.display},
                insecure=self.insecure,
                progress=show,
            ) as img,
        ):
            for out in self.outputs:
                write(img, out, self.ref, show)
            if self.push:
                push(img, self.ref, insecure=self.insecure, progress=show)
            if self.load:
                load(img, self.ref)
        click.echo(f"{self.ref} {img.digest}")


IMAGE_OPTIONS = [
    click.option(
        "--image",
        metavar="IMAGE",
        help="After the build, assemble a container image of the model (no Docker daemon"
        " needed) named IMAGE: its weights and config as two layers on --runtime.",
    ),
    click.option(
        "--runtime",
        metavar="RUNTIME_IMAGE",
        help="The image's base, from `modelkit runtime-image`: REGISTRY/REPO:TAG,"
        " oci:DIR[:TAG], docker-archive:FILE or docker-daemon:NAME:TAG.",
    ),
    click.option(
        "--image-output",
        multiple=True,
        metavar="oci:DIR | docker-archive:FILE",
        help="Write the image to an OCI layout or a docker-load archive (repeatable).",
    ),
    click.option("--push-image", is_flag=True, help="Push the image to its registry."),
    click.option("--load-image", is_flag=True, help="Load the image into the Docker daemon."),
]


def image_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(IMAGE_OPTIONS):
        command = option(command)
    return command


@click.command()
@click.option("-t", "--tag", required=True, help="The model name, e.g. mymodel:latest.")
@build_options
@image_options
def build(tag: str, modelfile: str, **options: Any) -> None:
    """Build a model from a Modelfile into the store (a FROM name missing locally is pulled).

    Before the tag is written the model must pass a smoke check (it loads, its template
    renders a system and a user message, it generates a few tokens) and, with --test, every
    case of a test spec; otherwise the build fails and no tag is written.

    With --image IMAGE --runtime RUNTIME_IMAGE it then ships the model as a container image
    (as `modelkit image` does, with MODELKIT_PRELOAD set to the model): --load-image,
    --push-image and/or --image-output."""
    request = ImageRequest.from_options(
        options.pop("image"),
        options.pop("runtime"),
        options.pop("image_output"),
        options.pop("push_image"),
        options.pop("load_image"),
        bool(options.get("insecure")),
    )
    if request is not None and options.get("dry_run"):
        raise click.UsageError("--image cannot go with --dry-run")
    name = run_build(modelfile, tag, **options)
    if request is not None and name is not None:
        request.ship(name, quiet=bool(options.get("quiet")))


@click.command()
@click.argument("name")
@build_options
def create(name: str, modelfile: str, **options: Any) -> None:
    """Create a model from a Modelfile (Ollama's spelling of build; checked the same way)."""
    run_build(modelfile, name, **options)


@click.command()
@MODELFILE_OPTION
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
    help="text: path:line:col: severity[rule]: message (hint); sarif: SARIF 2.1.0.",
)
@click.option(
    "--publish",
    is_flag=True,
    help="Also check what a model to be pushed needs (a LICENSE).",
)
def lint(modelfile: str, output_format: str, publish: bool) -> None:
    """Check a Modelfile; exit 1 when it has errors."""
    path = Path(modelfile)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise click.ClickException(f"cannot read {modelfile}: {err.strerror}") from None
    report = lint_text(data, str(path), publish=publish)
    if output_format == "json":
        click.echo(json.dumps(report.to_json(with_rules=True), indent=2, ensure_ascii=False))
    elif output_format == "sarif":
        click.echo(json.dumps(to_sarif(report, str(path)), indent=2, ensure_ascii=False))
    else:
        text = report.to_text(str(path), with_rules=True)
        click.echo(text if text else f"{path}: ok", nl=not text)
    raise SystemExit(0 if report.ok else 1)
