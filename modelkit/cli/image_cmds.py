"""``modelkit image``: a stored model as a container image, assembled without Docker."""

from __future__ import annotations

import os
import sys

import click
from rich.console import Console

from modelkit.cli.progress import registry_progress
from modelkit.config import Settings
from modelkit.errors import ImageError
from modelkit.image import ImageRef, assemble, load, parse_output, push, write
from modelkit.store import Store


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key] = value
    return out


def _source_date_epoch() -> int | None:
    # The reproducible-builds convention: an edge reads it, assembly takes it as a value.
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ImageError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {raw!r}")
    return int(raw)


@click.command("image")
@click.argument("name")
@click.option(
    "-t",
    "--tag",
    "image_ref",
    required=True,
    metavar="IMAGE",
    help="The image's name: REGISTRY/REPO:TAG for --push, the RepoTag for --load/archives.",
)
@click.option(
    "--runtime",
    metavar="RUNTIME_IMAGE",
    help="The base image: REGISTRY/REPO:TAG, oci:DIR[:TAG], docker-archive:FILE or"
    " docker-daemon:NAME:TAG.",
)
@click.option("--model-only", is_flag=True, help="No base: an image of just the model's layers.")
@click.option("--env", multiple=True, metavar="K=V", help="Set an environment variable.")
@click.option("--label", multiple=True, metavar="K=V", help="Set an image label.")
@click.option(
    "-o",
    "--output",
    multiple=True,
    metavar="oci:DIR | docker-archive:FILE",
    help="Write the image to an OCI layout or a docker-load archive (repeatable).",
)
@click.option("--push", "do_push", is_flag=True, help="Push the image to its registry.")
@click.option("--load", "do_load", is_flag=True, help="Load the image into the Docker daemon.")
@click.option("--insecure", is_flag=True, help="Use plain HTTP for a non-loopback registry.")
def image(
    name: str,
    image_ref: str,
    runtime: str | None,
    model_only: bool,
    env: tuple[str, ...],
    label: tuple[str, ...],
    output: tuple[str, ...],
    do_push: bool,
    do_load: bool,
    insecure: bool,
) -> None:
    """Assemble a container image of model NAME: its weights and config as two layers on a
    runtime image (OLLAMA_MODELS=/models), without a Docker daemon or a build step."""
    # Everything the user typed is checked before any GB is hashed.
    ref = ImageRef.parse(image_ref)
    outputs = [parse_output(o) for o in output]
    env_vars = _pairs(env, "--env")
    labels = _pairs(label, "--label")
    epoch = _source_date_epoch()
    if model_only == (runtime is not None):
        raise ImageError("give exactly one of --runtime IMAGE and --model-only")
    store = Store(Settings.from_env().models)
    console = Console(file=sys.stderr)
    with (
        registry_progress(console) as show,
        assemble(
            store,
            name,
            base=runtime,
            model_only=model_only,
            env=env_vars,
            labels=labels,
            source_date_epoch=epoch,
            insecure=insecure,
            progress=show,
        ) as img,
    ):
        for out in outputs:
            write(img, out, ref, show)
            show({"status": f"wrote {out}"})
        if do_push:
            push(img, ref, insecure=insecure, progress=show)
        if do_load:
            for tag in load(img, ref) or [ref.familiar]:
                show({"status": f"loaded {tag}"})
    click.echo(f"{ref} {img.digest}")
    if not (outputs or do_push or do_load):
        click.echo("nothing written: add --output, --push or --load", err=True)
