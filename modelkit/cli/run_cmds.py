"""``modelkit run``, ``ps`` and ``stop``: the client side, talking to the server at
``OLLAMA_HOST`` over HTTP as ``ollama run`` does."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from modelkit.cli.client import APIClient, ClientError
from modelkit.cli.humanize import go_duration, human_bytes, human_time, table
from modelkit.cli.image_paths import ImageFileError, encode_image, extract_images, read_image
from modelkit.cli.repl import LineAssembler, Session, handle_line, is_vision
from modelkit.config import Settings

STAT_LINES = (
    ("total duration:       ", "total_duration", "duration"),
    ("load duration:        ", "load_duration", "duration"),
    ("prompt eval count:    ", "prompt_eval_count", "count"),
    ("prompt eval duration: ", "prompt_eval_duration", "duration"),
    ("prompt eval rate:     ", "prompt_eval", "rate"),
    ("eval count:           ", "eval_count", "count"),
    ("eval duration:        ", "eval_duration", "duration"),
    ("eval rate:            ", "eval", "rate"),
)


def format_stats(final: dict[str, Any]) -> str:
    """Ollama's ``--verbose`` statistics; each line only when its value is above zero."""
    lines = []
    for label, key, kind in STAT_LINES:
        if kind == "rate":
            count, ns = final.get(f"{key}_count", 0), final.get(f"{key}_duration", 0)
            if count > 0 and ns > 0:
                lines.append(f"{label}{count / (ns / 1e9):.2f} tokens/s")
            continue
        value = final.get(key, 0)
        if not value:
            continue
        lines.append(f"{label}{go_duration(value) if kind == 'duration' else f'{value} token(s)'}")
    return "\n".join(lines)


def _client() -> APIClient:
    client = APIClient(Settings.from_env().connectable_url)
    client.heartbeat()
    return client


def _print_stream(chunks: Any, key: str, hide_thinking: bool) -> dict[str, Any]:
    """Echo streamed text (and thinking) as it arrives; returns the final object."""
    final: dict[str, Any] = {}
    thinking = False
    for chunk in chunks:
        part = chunk.get("message", chunk) if key == "message" else chunk
        think_text = part.get("thinking") or ""
        text = part.get("content" if key == "message" else "response") or ""
        if think_text and not hide_thinking:
            if not thinking:
                click.echo("Thinking...", nl=True)
                thinking = True
            click.echo(think_text, nl=False)
        if text:
            if thinking:
                click.echo("\n...done thinking.\n")
                thinking = False
            click.echo(text, nl=False)
        if chunk.get("done"):
            final = chunk
    click.echo()
    return final


def _added(paths: list[Any]) -> None:
    for path in paths:
        click.echo(f"Added image '{path}'", err=True)


def _chat_turn(client: APIClient, session: Session, text: str, hide: bool) -> None:
    try:
        message, paths = session.user_message(text)
    except ImageFileError as err:
        # Ollama ends the session here; dropping just this message is kinder.
        click.echo(f"Couldn't process file: {json.dumps(str(err))}", err=True)
        return
    _added(paths)
    session.messages.append(message)
    body: dict[str, Any] = {
        "model": session.model,
        "messages": session.chat_messages(),
        "options": session.options,
    }
    if session.format:
        body["format"] = session.format
    if session.think is not None:
        body["think"] = session.think
    reply: list[str] = []

    def collect() -> Any:
        for chunk in client.stream("/api/chat", body):
            reply.append(chunk.get("message", {}).get("content", ""))
            yield chunk

    try:
        final = _print_stream(collect(), "message", hide)
    except KeyboardInterrupt:
        click.echo()
        session.messages.pop()
        return
    session.messages.append({"role": "assistant", "content": "".join(reply)})
    if session.verbose:
        click.echo(format_stats(final), err=True)


def _interactive(client: APIClient, session: Session, hide: bool) -> None:
    list(client.stream("/api/generate", {"model": session.model}))  # preload, like ollama run
    for message in session.messages:
        if message["role"] == "user":
            click.echo(f">>> {message['content']}")
        elif message["role"] == "assistant":
            click.echo(f"{message['content']}\n")
    assembler = LineAssembler()
    while True:
        try:
            line = input("... " if assembler.continuing else ">>> ")
        except EOFError:
            click.echo()
            return
        except KeyboardInterrupt:
            click.echo("\nUse Ctrl + d or /bye to exit.")
            continue
        text = assembler.feed(line)
        if text is None:
            continue
        try:
            outcome = handle_line(session, text, client)
        except ClientError as err:
            click.echo(f"Error: {err}", err=True)
            continue
        if outcome.kind == "exit":
            return
        if outcome.kind == "print":
            if outcome.text:
                click.echo(outcome.text)
            continue
        _chat_turn(client, session, outcome.text, hide)


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--verbose", is_flag=True, help="Show timings for the response.")
@click.option("--format", "fmt", type=click.Choice(["json"]), help="Response format.")
@click.option("--keepalive", help="How long the model stays loaded (e.g. 5m).")
@click.option("--think/--nothink", default=None, help="Enable/disable thinking.")
@click.option("--hidethinking", is_flag=True, help="Don't print the model's thinking.")
@click.option("--insecure", is_flag=True, hidden=True)
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words (accepted for Ollama parity).")
def run(
    model: str,
    prompt: tuple[str, ...],
    verbose: bool,
    fmt: str | None,
    keepalive: str | None,
    think: bool | None,
    hidethinking: bool,
    insecure: bool,
    nowordwrap: bool,
) -> None:
    """Run a model: answer PROMPT (or stdin), or chat interactively."""
    client = _client()
    info = client.request("POST", "/api/show", {"model": model})
    text = " ".join(prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        text = f"{piped} {text}".strip() if text else piped.strip()
    opts: dict[str, Any] = {}
    if fmt:
        opts["format"] = fmt
    if keepalive:
        opts["keep_alive"] = keepalive
    if think is not None:
        opts["think"] = think
    vision = is_vision(info)
    if text:
        opts["_verbose"] = verbose
        body_opts = {k: v for k, v in opts.items() if not k.startswith("_")}
        if vision:
            text, paths = extract_images(text)
            try:
                body_opts["images"] = [encode_image(read_image(p)) for p in paths]
            except ImageFileError as err:
                click.echo(f"Couldn't process file: {json.dumps(str(err))}", err=True)
                raise
            _added(paths)
        final = _print_stream(
            client.stream("/api/generate", {"model": model, "prompt": text, **body_opts}),
            "response",
            hidethinking,
        )
        if verbose:
            click.echo(format_stats(final), err=True)
        return
    session = Session(model=model, verbose=verbose, format=fmt, think=think, vision=vision)
    session.messages = [
        {"role": m["role"], "content": m["content"]} for m in info.get("messages") or []
    ]
    _interactive(client, session, hidethinking)


@click.command()
@click.argument("prefix", required=False, default="")
def ps(prefix: str) -> None:
    """List the models the server has loaded."""
    models = _client().request("GET", "/api/ps")["models"]
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "PID", "MEMORY", "KERNELS"]]
    for m in models:
        if not m["name"].lower().startswith(prefix.lower()):
            continue
        vram, size = m.get("size_vram", 0), m.get("size", 0)
        processor = "100% CPU" if vram == 0 else "100% GPU" if vram == size else "CPU/GPU"
        until = datetime.fromisoformat(m["expires_at"])
        runner = m.get("runner") or {}  # absent from Ollama's own servers
        rows.append(
            [
                m["name"],
                m["digest"][:12],
                human_bytes(size),
                processor,
                str(m.get("context_length", "")),
                human_time(until),
                str(runner.get("pid", "")),
                human_bytes(runner["rss"]) if "rss" in runner else "",
                str(runner.get("kernels", "")),
            ]
        )
    click.echo(table(rows))


@click.command()
@click.argument("model")
def stop(model: str) -> None:
    """Unload a model from the server now."""
    client = _client()
    loaded = [m["name"] for m in client.request("GET", "/api/ps")["models"]]
    if not any(name == model or name == f"{model}:latest" for name in loaded):
        raise ClientError(f'couldn\'t find model "{model}" to stop')
    list(client.stream("/api/generate", {"model": model, "keep_alive": 0}))
