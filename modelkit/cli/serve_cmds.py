"""``modelkit serve``: the Ollama HTTP API on ``OLLAMA_HOST`` (default 127.0.0.1:11434).

On SIGTERM or SIGINT the server stops accepting connections, gives the requests in flight
``MODELKIT_SHUTDOWN_TIMEOUT`` (default 5 s) to finish — streams still going then are cut —,
stops every model runner and exits with status 0. Start-up writes nothing when the store
exists and holds nothing to prune (a read-only store or root file system works).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Generator
from typing import TYPE_CHECKING

import click

from modelkit.config import Settings

if TYPE_CHECKING:
    import uvicorn

    from modelkit.store import Store


class _ServeCommand(click.Command):
    """Lists the OLLAMA_* variables with their *current* values under ``--help``."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(f"{name}={value}", text) for name, value, text in Settings.from_env().describe()]
        with formatter.section("Environment Variables"):
            formatter.write_dl(rows)


@click.command(cls=_ServeCommand)
@click.option(
    "--preload",
    "preload",
    multiple=True,
    metavar="MODEL",
    help="Load MODEL at start-up and keep it loaded (repeatable; adds to MODELKIT_PRELOAD). "
    "/readyz answers 200 once every preloaded model is loaded.",
)
def serve(preload: tuple[str, ...]) -> None:
    """Start the server (Ollama's API and its OpenAI-compatible /v1).

    Probes: /healthz (alive), /readyz (preloaded models loaded); metrics: /metrics.
    """
    import uvicorn

    from modelkit.server import create_app

    settings = Settings.from_env()
    if preload:
        names = dict.fromkeys((*settings.preload, *(n.strip() for n in preload if n.strip())))
        settings = dataclasses.replace(settings, preload=tuple(names))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    # Prune unreferenced blobs at start-up as Ollama does (blobs younger than an hour are
    # kept: they may belong to a build in progress) — when there is anything to prune.
    if not settings.noprune:
        _prune_at_start(settings)
    host = settings.host
    click.echo(f"modelkit listening on {host.netloc} (models: {settings.models})", err=True)
    if not (settings.api_keys or settings.api_keys_file) and not _loopback(host.host):
        click.echo(
            f"warning: {host.netloc} is reachable from other machines and no API keys are "
            "set: anyone who can reach it can use and change your models "
            "(set MODELKIT_API_KEYS or MODELKIT_API_KEYS_FILE)",
            err=True,
        )
    config = uvicorn.Config(
        create_app(settings),
        # Go's net.Listen(":port") listens on every address; so does an empty host here.
        host=host.host.strip("[]") or "0.0.0.0",
        port=host.port,
        log_level="debug" if settings.debug else "info",
        access_log=settings.debug > 0,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
    _graceful_server(config).run()


def _loopback(host: str) -> bool:
    from modelkit.server.security import is_loopback_host

    return bool(host) and is_loopback_host(host)


def _graceful_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, except that a shutdown asked for by SIGTERM/SIGINT ends with exit
    status 0: uvicorn raises the captured signal again once it has shut down, which makes
    the process die of it (status -15) or raise KeyboardInterrupt (130)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # handled: a clean shutdown

    return Server(config)


def _prune_at_start(settings: Settings) -> None:
    from modelkit.errors import StoreError
    from modelkit.store import Store

    store = Store(settings.models)
    try:
        if not _anything_to_prune(store, 3600):
            return  # pruning takes the store's locks: files written for nothing
        removed = store.prune(min_age_seconds=3600, timeout=5)
    except (StoreError, OSError) as err:  # a read-only store: serve it all the same
        logging.warning("not pruning blobs: %s", err)
        return
    if removed:
        logging.info("pruned %d unused blob(s)", len(removed))


def _anything_to_prune(store: Store, min_age_seconds: float) -> bool:
    """Whether :meth:`Store.prune` would remove a blob or a stale temp file (a read-only
    look; empty manifest directories alone are not worth a write)."""
    if not store.root.is_dir():
        return False
    refs = store.referenced_digests()
    now = time.time()
    for digest, path in store.blobs.iter_blobs():
        if digest in refs:
            continue
        try:
            if now - path.stat().st_mtime >= min_age_seconds:
                return True
        except FileNotFoundError:
            continue
    return bool(store.blobs.stale_temp_files(min_age_seconds=min_age_seconds))
