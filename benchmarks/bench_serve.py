#!/usr/bin/env python3
"""What serving costs: generation speed and time to first token through ``modelkit serve``,
as ratios against raw llama-cpp-python on the same model and settings, measured in one run.

    python benchmarks/bench_serve.py [--gguf PATH] [--runs N] [--num-predict N] [--threads N]
                                     [--warmup N] [--flash-attention {off,on}] [--no-openai]
                                     [--show-output]

Default model: the real Qwen2.5-Coder-0.5B-Instruct GGUF from ``examples/fetch_models.py``
when it is available without installing anything (``python examples/fetch_models.py qwen``
gets it); otherwise the script says so and exits 0 without measuring.

The GGUF is built into a temporary store (``python -m modelkit build --quiet``, a Modelfile with
``temperature 0``, ``num_ctx 2048``, ``num_thread --threads``, ``repeat_penalty 1``) and the
real server is started as a subprocess (``python -m modelkit serve`` on a free loopback
port). Three configurations, run one after the other in each round (never at the same time:
they would share the cores), each figure the median over ``--runs`` rounds:

* ``/api/generate``            streaming NDJSON through httpx, ``raw: true`` with a fixed
                                 prompt (no template), ``num_predict``, temperature 0, seed 1
* ``/v1/chat/completions``     streaming SSE through the official ``openai`` client (the
                                 chat template applies, so the prompt differs slightly)
* ``llama-cpp-python``          the baseline: ``Llama(gguf, n_ctx=2048, n_threads, n_batch=512)``
                                 in this process, ``create_completion(prompt, max_tokens,
                                 temperature=0, seed=1, repeat_penalty=1, stream=True)``

``tok/s`` (client) is (chunks with text - 1) / (time of the last one - time of the first
one): the steady generation speed as the client sees it, the prompt left out. ``TTFT`` is
the time from sending the request (or calling ``create_completion``) to the first chunk with
text. For the server, ``tok/s`` (server) is its own ``eval_count / eval_duration``. After the
warm-up round the prompt is in both engines' KV caches, so each call decodes one prompt token
before generating.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import load_module, qwen_gguf  # noqa: E402

SERVER_FIXTURE = REPO / "tests" / "fixtures" / "server.py"
MODEL_NAME = "bench"

# A raw prompt the model continues with numbers for far longer than --num-predict tokens.
PROMPT = "The numbers from 1 to 200, separated by commas: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
CHAT_MESSAGE = "Count from 1 to 200, separated by commas. Write only the numbers."


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    tokens: int  # generated tokens (server: eval_count; client: chunks with text)
    chunks: int  # chunks with text the client received
    ttft: float  # seconds from the request to the first chunk with text
    gen_seconds: float  # seconds from the first to the last chunk with text
    text: str
    done_reason: str
    server_rate: float | None = None  # eval_count / eval_duration, tokens/s

    @property
    def client_rate(self) -> float:
        return (self.chunks - 1) / self.gen_seconds if self.gen_seconds > 0 else float("nan")


@dataclass
class Config:
    label: str
    run: Callable[[], Result]
    results: list[Result] = field(default_factory=list)

    def median(self, value: Callable[[Result], float | None]) -> float | None:
        values = [v for r in self.results if (v := value(r)) is not None]
        return float(statistics.median(values)) if values else None


# --------------------------------------------------------------------------- the runs


def run_generate(client: Any, url: str, num_predict: int) -> Result:
    body = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "raw": True,
        "stream": True,
        "options": {"num_predict": num_predict, "temperature": 0, "seed": 1},
    }
    pieces: list[str] = []
    first = last = 0.0
    final: dict[str, Any] = {}
    sent = time.perf_counter()
    with client.stream("POST", url + "/api/generate", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line:
                continue
            obj = json.loads(line)
            if "error" in obj:
                raise RuntimeError(f"/api/generate: {obj['error']}")
            if obj.get("response"):
                now = time.perf_counter()
                if not pieces:
                    first = now
                last = now
                pieces.append(obj["response"])
            if obj.get("done"):
                final = obj
    if not final:
        raise RuntimeError("/api/generate: the stream ended without a done chunk")
    return Result(
        tokens=int(final["eval_count"]),
        chunks=len(pieces),
        ttft=first - sent,
        gen_seconds=last - first,
        text="".join(pieces),
        done_reason=str(final.get("done_reason")),
        server_rate=final["eval_count"] / final["eval_duration"] * 1e9,
    )


def run_openai_chat(client: Any, num_predict: int) -> Result:
    pieces: list[str] = []
    first = last = 0.0
    tokens = 0
    finish = ""
    sent = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": CHAT_MESSAGE}],
        max_tokens=num_predict,
        temperature=0,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    with contextlib.closing(stream):
        for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    now = time.perf_counter()
                    if not pieces:
                        first = now
                    last = now
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
    return Result(
        tokens=tokens,
        chunks=len(pieces),
        ttft=first - sent,
        gen_seconds=last - first,
        text="".join(pieces),
        done_reason=finish,
    )


def run_llama(llm: Any, num_predict: int) -> Result:
    pieces: list[str] = []
    first = last = 0.0
    finish = ""
    sent = time.perf_counter()
    stream = llm.create_completion(
        PROMPT,
        max_tokens=num_predict,
        temperature=0,
        seed=1,
        repeat_penalty=1.0,
        stream=True,
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["text"]:
            now = time.perf_counter()
            if not pieces:
                first = now
            last = now
            pieces.append(choice["text"])
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
    text = "".join(pieces)
    return Result(
        tokens=len(pieces),  # one chunk per token without stop strings (checked below)
        chunks=len(pieces),
        ttft=first - sent,
        gen_seconds=last - first,
        text=text,
        done_reason=finish,
    )


# --------------------------------------------------------------------------- set-up


def build_model(gguf: Path, store: Path, work: Path, threads: int) -> None:
    modelfile = work / "Modelfile"
    modelfile.write_text(
        f"FROM {gguf}\n"
        "PARAMETER temperature 0\n"
        "PARAMETER num_ctx 2048\n"
        f"PARAMETER num_thread {threads}\n"
        "PARAMETER repeat_penalty 1\n"
    )
    env = {**os.environ, "OLLAMA_MODELS": str(store)}
    cmd = [sys.executable, "-m", "modelkit", "build", "--quiet", "-f", str(modelfile)]
    subprocess.run([*cmd, "-t", MODEL_NAME], env=env, check=True, cwd=work)


@contextlib.contextmanager
def server(store: Path, work: Path, flash: bool) -> Iterator[Any]:
    fixture = load_module("modelkit_tests_fixture_server", SERVER_FIXTURE)
    env = {"OLLAMA_FLASH_ATTENTION": "1" if flash else "0", "OLLAMA_KEEP_ALIVE": "-1"}
    with fixture.running_server(store, work, env=env, timeout=60.0) as running:
        yield running


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="GGUF model (default: Qwen2.5-Coder-0.5B)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--num-predict", type=int, default=128, help="tokens per call")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument(
        "--flash-attention",
        choices=("off", "on"),
        default="off",
        help="flash attention in both engines (llama-cpp-python's default is off)",
    )
    parser.add_argument("--no-openai", action="store_true", help="skip /v1/chat/completions")
    parser.add_argument("--show-output", action="store_true", help="print the last outputs")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.num_predict < 2:
        parser.error("--runs must be at least 1 and --num-predict at least 2")

    try:
        import httpx
        import llama_cpp  # noqa: F401  (guarded_llama loads it; say so here when missing)

        from modelkit.cpu import guarded_llama
    except ImportError as exc:
        print(f"skipped: {exc.name} is not installed")
        return 0
    openai: ModuleType | None = None
    if not args.no_openai:
        try:
            import openai
        except ImportError:
            print("note: the openai package is not installed: no /v1/chat/completions row")

    gguf: Path | None = args.gguf
    if gguf is None:
        gguf, why = qwen_gguf()
        if gguf is None:
            print(
                f"skipped: the Qwen2.5-Coder-0.5B GGUF is not available ({why}); "
                "`python examples/fetch_models.py qwen` assembles it, or pass --gguf"
            )
            return 0
    gguf = gguf.resolve()
    if not gguf.is_file():
        print(f"skipped: {gguf} does not exist")
        return 0
    flash = args.flash_attention == "on"

    print(f"model: {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB)")
    print(
        f"settings: {args.num_predict} tokens, temperature 0, seed 1, repeat_penalty 1, "
        f"num_ctx 2048, n_batch 512, {args.threads} threads, flash attention "
        f"{args.flash_attention}; {args.warmup} warm-up + {args.runs} timed rounds "
        f"(median), cpu_count {os.cpu_count()}"
    )
    print(f"prompt (raw): {PROMPT!r}")

    with tempfile.TemporaryDirectory(prefix="modelkit-bench-serve-") as tmp:
        work = Path(tmp)
        store = work / "models"
        store.mkdir()
        build_model(gguf, store, work, args.threads)

        llm = guarded_llama(  # the same CPU kernels as modelkit's runtime (AMX guard)
            str(gguf),
            n_ctx=2048,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            n_batch=512,
            flash_attn=flash,
            verbose=False,
        )
        try:
            with contextlib.ExitStack() as stack:
                running = stack.enter_context(server(store, work, flash))
                http = stack.enter_context(httpx.Client(timeout=600))
                configs = [
                    Config(
                        "/api/generate (httpx)",
                        lambda: run_generate(http, running.url, args.num_predict),
                    )
                ]
                if openai is not None:
                    # A second server (idle while the others run), so that each server's
                    # prompt cache holds its own prompt, as llama-cpp-python's does.
                    chat_server = stack.enter_context(server(store, work, flash))
                    oai = openai.OpenAI(base_url=chat_server.url + "/v1", api_key="bench")
                    configs.append(
                        Config(
                            "/v1/chat/completions (openai)",
                            lambda: run_openai_chat(oai, args.num_predict),
                        )
                    )
                raw = Config("llama-cpp-python (raw)", lambda: run_llama(llm, args.num_predict))
                configs.append(raw)

                for _ in range(args.warmup):  # loads the model, fills the prompt caches
                    for config in configs:
                        config.run()
                for i in range(args.runs):
                    # Alternate the order so that no configuration always runs first.
                    for config in configs if i % 2 == 0 else configs[::-1]:
                        config.results.append(config.run())
                log_tail = running.log_text()[-2000:]
        finally:
            llm.close()

    api = configs[0]
    report(configs, api, raw, args.num_predict)
    if args.show_output:
        for config in configs:
            print(f"\n--- {config.label}, last output:\n{config.results[-1].text}")
    problems = check(configs, api, raw, args.num_predict)
    for problem in problems:
        print(f"WARNING: {problem}")
    if problems and log_tail.strip():
        print("server log (tail):\n" + log_tail)
    return 0


def paired(config: Config, raw: Config, value: Callable[[Result, Result], float]) -> float:
    """The median over rounds of ``value(this round's result, raw's result)``."""
    return float(
        statistics.median(value(a, b) for a, b in zip(config.results, raw.results, strict=True))
    )


def report(configs: list[Config], api: Config, raw: Config, num_predict: int) -> None:
    header = (
        f"{'configuration':<30} {'tokens':>6} {'tok/s client':>12} {'(min-max)':>11} "
        f"{'tok/s server':>12} {'/ raw':>7} {'TTFT ms':>8} {'- raw ms':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for config in configs:
        rate = config.median(lambda r: r.client_rate) or float("nan")
        ttft = config.median(lambda r: r.ttft) or float("nan")
        rates = [r.client_rate for r in config.results]
        ratio = paired(config, raw, lambda a, b: a.client_rate / b.client_rate)
        overhead = paired(config, raw, lambda a, b: a.ttft - b.ttft)
        print(
            f"{config.label:<30} {fmt(config.median(lambda r: r.tokens), '.0f'):>6} "
            f"{rate:>12.2f} {f'{min(rates):.1f}-{max(rates):.1f}':>11} "
            f"{fmt(config.median(lambda r: r.server_rate), '.2f'):>12} "
            f"{ratio:>6.3f}x {ttft * 1e3:>8.1f} {overhead * 1e3:>+9.1f}"
        )
    print(
        "(medians over the rounds; '/ raw' and '- raw ms' are medians of the per-round "
        "comparisons with the raw run of the same round)"
    )
    print()

    def ratio_line(config: Config, name: str) -> None:
        ratio = paired(config, raw, lambda a, b: a.client_rate / b.client_rate)
        print(f"generation tokens/s via {name} / raw llama-cpp-python: {ratio:.2f}× (goal ≥ 0.97)")
        best = max(r.client_rate for r in config.results)
        best_raw = max(r.client_rate for r in raw.results)
        of_medians = (config.median(lambda r: r.client_rate) or 0) / (
            raw.median(lambda r: r.client_rate) or float("nan")
        )
        print(
            f"  (ratio of the medians: {of_medians:.2f}×; best run / best run: "
            f"{best / best_raw:.2f}×)"
        )

    ratio_line(api, "/api/generate")
    server_ratio = paired(api, raw, lambda a, b: (a.server_rate or 0) / b.client_rate)
    print(
        f"  (server-reported eval_count/eval_duration / raw llama-cpp-python: {server_ratio:.2f}×)"
    )
    overhead = paired(api, raw, lambda a, b: a.ttft - b.ttft)
    api_ttft = api.median(lambda r: r.ttft) or float("nan")
    raw_ttft = raw.median(lambda r: r.ttft) or float("nan")
    print(
        f"TTFT overhead: {overhead * 1e3:+.0f} ms (server TTFT - raw TTFT; medians "
        f"{api_ttft * 1e3:.1f} ms and {raw_ttft * 1e3:.1f} ms)"
    )
    per_token = paired(api, raw, lambda a, b: 1 / a.client_rate - 1 / b.client_rate)
    print(f"per-token overhead via /api/generate: {per_token * 1e3:+.2f} ms/token")
    if len(configs) > 2:
        chat = configs[1]
        ratio_line(chat, "/v1/chat/completions (openai)")
        overhead = paired(chat, raw, lambda a, b: a.ttft - b.ttft)
        print(
            f"TTFT overhead via /v1/chat/completions (openai): {overhead * 1e3:+.0f} ms "
            "(chat prompt, not the raw one)"
        )


def check(configs: list[Config], api: Config, raw: Config, num_predict: int) -> list[str]:
    """What makes the comparison unfair: fewer tokens than asked, different outputs."""
    problems: list[str] = []
    for config in configs:
        for i, r in enumerate(config.results):
            if r.tokens != num_predict:
                problems.append(
                    f"{config.label} round {i + 1}: {r.tokens} tokens, not {num_predict} "
                    f"(done_reason {r.done_reason!r}): the model stopped early"
                )
            if r.chunks != r.tokens:
                problems.append(
                    f"{config.label} round {i + 1}: {r.chunks} text chunks for {r.tokens} "
                    "tokens (the client-side rate counts chunks)"
                )
    same = all(r.text == raw.results[0].text for c in (api, raw) for r in c.results)
    print(
        "/api/generate and llama-cpp-python generated the same text in every round: "
        + ("yes" if same else "NO")
    )
    if not same:
        problems.append("the greedy outputs differ between the server and llama-cpp-python")
    return problems


if __name__ == "__main__":
    sys.exit(main())
