#!/usr/bin/env python3
"""What structured output (``format``) costs: generation speed with and without a JSON
grammar, in modelkit and in llama-cpp-python's stock path, as ratios measured in one process
on the same model, prompt and settings.

    python benchmarks/bench_format.py [--gguf PATH] [--runs N] [--num-predict N] [--threads N]
                                      [--warmup N] [--show-output]

Default model: the real Qwen2.5-Coder-0.5B-Instruct GGUF from ``examples/fetch_models.py``
when it is available without installing anything (``python examples/fetch_models.py qwen``
gets it); otherwise the script says so and exits 0 without measuring.

Five configurations, the same ChatML prompt, temperature 0 (greedy), ``--num-predict``
tokens at most, ``--threads`` threads, a 2048-token context:

* modelkit, unconstrained       ``LoadedModel.generate(prompt, options)``
* modelkit, format json          ``... grammar=gbnf_for_format("json")``
* modelkit, JSON schema          ``... grammar=gbnf_for_format(SCHEMA)``
* llama-cpp-python, no grammar   ``Llama.create_completion(prompt, temperature=0, ...)``
* llama-cpp-python, JSON schema  ``... grammar=LlamaGrammar.from_json_schema(SCHEMA)``

Both JSON-schema runs use the same GBNF (llama-cpp-python's converter). modelkit checks the
token the sampler picked against the grammar and only filters the whole vocabulary through
the grammar when that token is rejected; llama-cpp-python's stock sampler chain applies the
grammar to every token of the vocabulary at every step.

Speed is generated tokens / wall-clock seconds of the whole call. After the warm-up round the
prompt is in both engines' KV caches, so a call is one prompt token plus the generation. The
configurations are run round-robin (a round runs each once) so that a machine whose speed
drifts affects them all alike; each figure is the median over ``--runs`` rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import qwen_gguf  # noqa: E402

QUESTION = (
    "List 30 countries as JSON: an object with the key countries, an array of objects "
    "with the keys name, capital, continent and population (an integer)."
)
PROMPT = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "countries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "capital": {"type": "string"},
                    "continent": {
                        "enum": [
                            "Africa",
                            "Asia",
                            "Europe",
                            "North America",
                            "South America",
                            "Oceania",
                        ]
                    },
                    "population": {"type": "integer"},
                },
                "required": ["name", "capital", "continent", "population"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["countries"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    tokens: int
    seconds: float
    text: str
    done_reason: str
    fast: int = 0  # modelkit's guard: tokens accepted by the single-token check
    slow: int = 0  # ... and steps that filtered the whole vocabulary


@dataclass
class Config:
    label: str
    key: str
    run: Callable[[], Result]
    constrained: bool
    results: list[Result] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.results))

    def rate(self) -> float:
        """Median tokens per second."""
        return float(statistics.median(r.tokens / r.seconds for r in self.results))


def check_json(config: Config, result: Result) -> None:
    """A constrained run must produce JSON (a prefix of it when cut by num_predict)."""
    text = result.text.strip()
    if not text.startswith("{"):
        raise SystemExit(f"{config.label}: output is not JSON: {result.text[:200]!r}")
    if result.done_reason == "stop":
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            raise SystemExit(f"{config.label}: finished output is not JSON ({err})") from None


# --------------------------------------------------------------------------- the runs


def make_configs(gguf: Path, num_predict: int, threads: int) -> tuple[list[Config], list[Any]]:
    """The five configurations, and the objects to close at the end."""
    import llama_cpp

    import modelkit.runtime.engine.model as engine
    from modelkit.cpu import guarded_llama
    from modelkit.runtime.constrain import GrammarGuard, gbnf_for_format
    from modelkit.runtime.engine import LoadedModel
    from modelkit.runtime.options import load_params, resolve_options

    guards: list[GrammarGuard] = []

    class CountingGuard(GrammarGuard):
        """The engine's guard, remembered so its fast/slow counters can be read."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            guards.append(self)

    engine.GrammarGuard = CountingGuard  # type: ignore[misc]

    model = LoadedModel(
        gguf, load=load_params(resolve_options(None, {"num_thread": threads, "num_ctx": 2048}))
    )
    # Greedy, no repetition penalty: the same sampling as create_completion(temperature=0).
    options = resolve_options(
        None, {"temperature": 0, "seed": 0, "num_predict": num_predict, "repeat_penalty": 1.0}
    )
    json_gbnf = gbnf_for_format("json")
    schema_gbnf = gbnf_for_format(SCHEMA)

    llm = guarded_llama(str(gguf), n_ctx=2048, n_threads=threads, verbose=False)
    stock_grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    if stock_grammar._grammar != schema_gbnf:
        print("note: modelkit's and llama-cpp-python's schema grammars differ", file=sys.stderr)

    def modelkit_run(grammar: str | None) -> Callable[[], Result]:
        def run() -> Result:
            before = len(guards)
            started = time.perf_counter()
            final = list(model.generate(PROMPT, options, stream=False, grammar=grammar))[-1]
            seconds = time.perf_counter() - started
            assert final.stats is not None
            result = Result(final.stats.eval_count, seconds, final.text, final.stats.done_reason)
            if len(guards) > before:
                result.fast, result.slow = guards[-1].fast_hits, guards[-1].slow_paths
            return result

        return run

    def stock_run(grammar: Any) -> Callable[[], Result]:
        def run() -> Result:
            started = time.perf_counter()
            out: Any = llm.create_completion(
                PROMPT, grammar=grammar, temperature=0, max_tokens=num_predict
            )
            seconds = time.perf_counter() - started
            choice = out["choices"][0]
            done = "length" if choice["finish_reason"] == "length" else "stop"
            return Result(out["usage"]["completion_tokens"], seconds, choice["text"], done)

        return run

    configs = [
        Config("modelkit, unconstrained", "mk-free", modelkit_run(None), False),
        Config("modelkit, format json", "mk-json", modelkit_run(json_gbnf), True),
        Config("modelkit, JSON schema", "mk-schema", modelkit_run(schema_gbnf), True),
        Config("llama-cpp-python, no grammar", "stock-free", stock_run(None), False),
        Config("llama-cpp-python, JSON schema", "stock-schema", stock_run(stock_grammar), True),
    ]
    return configs, [model, llm]


def measure(configs: list[Config], runs: int, warmup: int) -> None:
    for round_no in range(warmup + runs):
        for config in configs:
            result = config.run()
            if config.constrained:
                check_json(config, result)
            if round_no >= warmup:
                config.results.append(result)
        what = "warm-up" if round_no < warmup else f"run {round_no - warmup + 1}/{runs}"
        print(f"  {what} done", file=sys.stderr)


def same_text(a: Config, b: Config) -> str:
    """Whether the two configurations' last outputs are the same text, or where they part."""
    x, y = a.results[-1].text, b.results[-1].text
    if x == y:
        return "yes"
    at = next(
        (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y))
    )
    return f"no (they part at character {at})"


def report(configs: list[Config], gguf: Path, args: argparse.Namespace) -> str:
    by_key = {c.key: c for c in configs}
    lines = [
        f"model: {gguf.name}   threads: {args.threads}   num_predict: {args.num_predict}   "
        f"temperature: 0   runs: {args.runs} (median)",
        "",
        f"{'configuration':<32}{'tokens':>8}{'seconds':>10}{'tok/s':>9}   guard fast/slow",
    ]
    for c in configs:
        guard = ""
        if c.key in ("mk-json", "mk-schema"):
            guard = f"{c.median('fast'):.0f} / {c.median('slow'):.0f}"
        lines.append(
            f"{c.label:<32}{c.median('tokens'):>8.0f}{c.median('seconds'):>10.3f}"
            f"{c.rate():>9.1f}   {guard}".rstrip()
        )

    def ratio(label: str, num: str, den: str) -> str:
        value = by_key[num].rate() / by_key[den].rate()
        return f"{label:<56}{value:>6.2f}x"

    lines += [
        "",
        "tok/s ratios (above 1.00x: the first is faster):",
        ratio("modelkit: format json / unconstrained", "mk-json", "mk-free"),
        ratio("modelkit: JSON schema / unconstrained", "mk-schema", "mk-free"),
        ratio("llama-cpp-python: JSON schema / no grammar", "stock-schema", "stock-free"),
        ratio("JSON schema: modelkit / llama-cpp-python", "mk-schema", "stock-schema"),
        ratio("unconstrained: modelkit / llama-cpp-python", "mk-free", "stock-free"),
        "",
        "same greedy text from modelkit and llama-cpp-python (last round):",
        f"  unconstrained: {same_text(by_key['mk-free'], by_key['stock-free'])}",
        f"  JSON schema:   {same_text(by_key['mk-schema'], by_key['stock-schema'])}",
    ]
    if args.show_output:
        for c in configs:
            lines += ["", f"--- {c.label} ({c.results[-1].done_reason}):", c.results[-1].text]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="a GGUF model (default: the Qwen test model)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds (default 1)")
    parser.add_argument("--num-predict", type=int, default=128, help="max tokens (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--show-output", action="store_true", help="print each last output")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.num_predict < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--runs, --num-predict and --threads must be >= 1, --warmup >= 0")

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("skipped: llama-cpp-python is not installed (pip install 'modelkit[runtime]')")
        return 0
    gguf = args.gguf
    if gguf is None:
        gguf, why = qwen_gguf()
        if gguf is None:
            print(
                f"skipped: the Qwen2.5-Coder-0.5B GGUF is not available ({why}); get it with "
                "`python examples/fetch_models.py qwen` or pass --gguf PATH"
            )
            return 0
    elif not gguf.is_file():
        parser.error(f"no such file: {gguf}")

    configs, to_close = make_configs(gguf, args.num_predict, args.threads)
    try:
        measure(configs, args.runs, args.warmup)
    finally:
        for obj in to_close:
            obj.close()
    print(report(configs, gguf, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
