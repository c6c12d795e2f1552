"""``modelkit healthcheck``: probe a running server's ``/healthz`` (or ``/readyz``) — a Docker
``HEALTHCHECK`` that needs no curl in the image."""

from __future__ import annotations

import click
import httpx

from modelkit.config import Settings, parse_host

TIMEOUT = 3.0
"""Seconds for the whole probe (connect and answer)."""


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return response.text.strip()[:200] or response.reason_phrase


@click.command()
@click.option(
    "--host",
    metavar="URL",
    help="The server to probe, written as OLLAMA_HOST is (default: $OLLAMA_HOST, "
    "else 127.0.0.1:11434).",
)
@click.option("--ready", is_flag=True, help="Probe /readyz (preloaded models loaded) instead.")
def healthcheck(host: str | None, ready: bool) -> None:
    """Exit 0 if the server answers 200 on /healthz (or /readyz with --ready), else 1."""
    base = parse_host(host).connectable().url if host else Settings.from_env().connectable_url
    url = base.rstrip("/") + ("/readyz" if ready else "/healthz")
    try:
        response = httpx.get(url, timeout=TIMEOUT)
    except httpx.TimeoutException:
        click.echo(f"unhealthy: {url} did not answer within {TIMEOUT:g} s", err=True)
        raise SystemExit(1) from None
    except httpx.HTTPError as err:
        click.echo(f"unhealthy: cannot reach {url}: {err}", err=True)
        raise SystemExit(1) from None
    if response.status_code != 200:
        click.echo(f"unhealthy: {url}: HTTP {response.status_code}: {_reason(response)}", err=True)
        raise SystemExit(1)
