"""``modelkit runtime-image``: build the runtime image (Python, modelkit, llama-cpp-python; no
model) through the Docker daemon, or write its build context for another builder."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import click

from modelkit.image.runtime import (
    DEFAULT_BASE_IMAGE,
    base_has_tini,
    build_image,
    checkout_root,
    daemon_client,
    prepare_context,
)


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _log(line: str) -> None:
    click.echo(line, err=True)


@click.command("runtime-image")
@click.option(
    "-t",
    "--tag",
    "tag",
    metavar="IMAGE",
    help="The image's name, e.g. modelkit-runtime:latest (required unless --output).",
)
@click.option(
    "--base-image",
    default=DEFAULT_BASE_IMAGE,
    show_default=True,
    metavar="IMAGE",
    help="The image to build on: it needs the same Python minor version as this one"
    " (the wheels are built here) and a shell.",
)
@click.option(
    "--wheels",
    "wheels_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Take llama-cpp-python's wheel and every dependency from this folder, without an"
    " index (modelkit's own wheel is still built from this checkout when there is one).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Only write the build context (Dockerfile, .dockerignore, wheels/) into this folder,"
    " for docker build, buildx, buildah or kaniko.",
)
@click.option(
    "--tini/--no-tini",
    default=None,
    help="Run modelkit under the base image's /usr/bin/tini (Debian package tini) as PID 1."
    " Default: when the base has it (with --output: no). Without it, run containers with"
    " `docker run --init`.",
)
@click.option(
    "--network",
    is_flag=True,
    help="Let the build reach the network (by default it runs with --network none).",
)
@click.option("--no-cache", is_flag=True, help="Do not use the daemon's layer cache.")
def runtime_image(
    tag: str | None,
    base_image: str,
    wheels_dir: Path | None,
    output: Path | None,
    tini: bool | None,
    network: bool,
    no_cache: bool,
) -> None:
    """Build the runtime image that model images start from: modelkit serve with a portable
    (not -march=native) llama.cpp, non-root, with a healthcheck. Use it once, then
    `modelkit image NAME -t IMAGE --runtime docker-daemon:RUNTIME_IMAGE --load`."""
    if output is None and not tag:
        raise click.UsageError("give -t IMAGE (or --output DIR to write the build context)")
    # The daemon first: a missing one (or base image) fails before any wheel is built.
    client = daemon_client() if output is None else None
    if tini is None:
        tini = base_has_tini(client, base_image) if client is not None else False
    source = checkout_root()
    started = time.monotonic()
    if output is not None:
        context = prepare_context(
            output,
            base_image=base_image,
            wheels_dir=wheels_dir,
            source=source,
            cache_home=_cache_home(),
            tini=tini,
            log=_log,
        )
        click.echo(
            f"wrote the build context to {output} ({len(context.wheels)} wheels,"
            f" llama.cpp build: {context.llama_build})"
        )
        click.echo(f"build it with: docker build -t {tag or 'modelkit-runtime'} {output}")
        if not tini:
            click.echo("(no tini in it: run its containers with `docker run --init`)")
        return
    assert tag is not None
    workdir = Path(tempfile.mkdtemp(prefix="modelkit-runtime-"))
    try:
        context = prepare_context(
            workdir / "context",
            base_image=base_image,
            wheels_dir=wheels_dir,
            source=source,
            cache_home=_cache_home(),
            tini=tini,
            log=_log,
        )
        image_id = build_image(
            context, tag, client=client, log=_log, network=network, no_cache=no_cache
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(
        f"{tag} {image_id} (llama.cpp build: {context.llama_build};"
        f" {'tini' if tini else 'no init: run it with docker run --init'};"
        f" {time.monotonic() - started:.1f}s)"
    )
