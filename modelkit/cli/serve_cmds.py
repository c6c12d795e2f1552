"""``modelkit serve``: the Ollama HTTP API on ``OLLAMA_HOST`` (default 127.0.0.1:11434)."""

from __future__ import annotations

import logging

import click

from modelkit.config import Settings


class _ServeCommand(click.Command):
    """Lists the OLLAMA_* variables with their *current* values under ``--help``."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(f"{name}={value}", text) for name, value, text in Settings.from_env().describe()]
        with formatter.section("Environment Variables"):
            formatter.write_dl(rows)


@click.command(cls=_ServeCommand)
def serve() -> None:
    """Start the server (Ollama's API and its OpenAI-compatible /v1)."""
    import uvicorn

    from modelkit.server import create_app

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    # Prune unreferenced blobs at start-up as Ollama does (blobs younger than an hour are
    # kept: they may belong to a build in progress).
    if not settings.noprune:
        _prune_at_start(settings)
    host = settings.host
    click.echo(f"modelkit listening on {host.netloc} (models: {settings.models})", err=True)
    uvicorn.run(
        create_app(settings),
        # Go's net.Listen(":port") listens on every address; so does an empty host here.
        host=host.host.strip("[]") or "0.0.0.0",
        port=host.port,
        log_level="debug" if settings.debug else "info",
        access_log=settings.debug > 0,
    )


def _prune_at_start(settings: Settings) -> None:
    from modelkit.errors import StoreError
    from modelkit.store import Store

    try:
        removed = Store(settings.models).prune(min_age_seconds=3600, timeout=5)
    except StoreError as err:
        logging.warning("not pruning blobs: %s", err)
        return
    if removed:
        logging.info("pruned %d unused blob(s)", len(removed))
