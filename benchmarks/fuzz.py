#!/usr/bin/env python3
"""Fuzzing the real server from its own OpenAPI document with schemathesis: every operation
in ``/openapi.json``, valid and invalid requests (bodies, path parameters), against a
``modelkit serve`` on loopback with the tests' tiny model. Checked for every answer: no 5xx,
the status code and the content type are documented, and the body matches the documented
schema (NDJSON lines and server-sent events included).

    python benchmarks/fuzz.py [--examples 200] [--seconds 1800] [--seed N]

Prints the examples run by operation (and how many were answered 2xx), the statuses, then the
failures by check (with a sample of each kind), and exits 1 on any failure, a traceback in the
server's log, or a server that died. ``tests/server/test_fuzz.py`` runs 10 examples an
operation. The time bound is shared out among the operations still to run.

Left out: ``POST /api/pull`` and ``POST /api/push`` (they reach a registry over the network).
Traffic goes to 127.0.0.1 only: the server's outgoing HTTP proxy is set to a closed loopback
port as well. Half of the generated bodies get the real model's name (so that the model runs,
not only the "not found" path) and requests that would delete or overwrite that model are
not sent: it is needed to the end. The server runs with ``MODELKIT_MAX_NUM_PREDICT`` and
``MODELKIT_MAX_NUM_CTX`` set, so that fuzzed options cannot ask for minutes of generation.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing modelkit
    sys.path.insert(0, str(REPO))

from benchmarks.shared import load_module  # noqa: E402

SERVER_FIXTURE = REPO / "tests" / "fixtures" / "server.py"
TINY_GGUF = REPO / "tests" / "fixtures" / "tiny_gguf.py"

EXCLUDED = {
    "/api/pull": "pulls from a registry over the network",
    "/api/push": "pushes to a registry over the network",
}
NOWHERE = "http://127.0.0.1:9"
"""A closed loopback port: the server's HTTP(S) proxy, so nothing it sends leaves the host."""

SERVER_ENV = {
    "OLLAMA_NUM_PARALLEL": "1",
    "OLLAMA_MAX_QUEUE": "16",
    "OLLAMA_KEEP_ALIVE": "-1",
    # Fuzzed options may ask for any budget or context: the server's caps keep answers quick
    # (a request over a cap is a 400).
    "MODELKIT_MAX_NUM_PREDICT": "64",
    "MODELKIT_MAX_NUM_CTX": "4096",
    "HTTP_PROXY": NOWHERE,
    "HTTPS_PROXY": NOWHERE,
    "ALL_PROXY": NOWHERE,
    "NO_PROXY": "",
    "http_proxy": NOWHERE,
    "https_proxy": NOWHERE,
    "all_proxy": NOWHERE,
    "no_proxy": "",
}
MODELFILE = (
    "FROM {path}\nPARAMETER stop <|im_end|>\nPARAMETER temperature 0\n"
    "PARAMETER num_predict 16\nPARAMETER num_ctx 256\nPARAMETER num_thread 1\n"
)
MODEL = "tiny"
AIMED = {"/api/copy": "source", "/api/create": "from", "/api/delete": ""}
"""The body field naming the model a request uses, where not ``model`` ("": none to aim)."""
HI = [{"role": "user", "content": "hi"}]
AIMED_INPUT: dict[str, dict[str, Any]] = {
    "/api/generate": {"prompt": "hi"},
    "/api/chat": {"messages": HI},
    "/api/embed": {"input": "hi"},
    "/api/embeddings": {"prompt": "hi"},
    "/v1/chat/completions": {"messages": HI},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/responses": {"input": "hi"},
}
"""What an aimed request gets where it has none: something for the model to work on."""
WRITES = {
    "/api/create": ("model", "name"),
    "/api/copy": ("destination",),
    "/api/delete": ("model", "name"),
}
"""Body fields naming a model the request writes or deletes: never the fuzzed model."""
REQUEST_TIMEOUT = 120.0


@dataclass
class FuzzReport:
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    """2xx answers by operation."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failed examples by check."""
    kinds: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Failed examples by (check, operation, what failed)."""
    samples: dict[tuple[str, str, str], str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.examples.values())

    def fail(self, check: str, label: str, title: str, text: str) -> None:
        self.failures[check] += 1
        key = (check, label, title)
        self.kinds[key] += 1
        self.samples.setdefault(key, text[:2000])

    def table(self) -> str:
        lines = [f"{'operation':<40} examples  2xx"]
        lines += [
            f"{label:<40} {count:>8} {self.answered[label]:>4}"
            for label, count in sorted(self.examples.items())
        ]
        lines.append(f"{'total':<40} {self.total} in {self.seconds:.0f} s")
        lines.append(
            "statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        )
        failed = ", ".join(f"{check}: {n}" for check, n in self.failures.most_common())
        lines.append(f"failures by check: {failed or 'none'}")
        for (check, label, title), count in sorted(self.kinds.items()):
            sample = self.samples[check, label, title].replace("\n", "\n    ")
            lines.append(f"FAILED {check} x{count}: {label}: {title}\n    {sample}")
        return "\n".join(lines)


def _same_model(name: Any, model: str) -> bool:
    from modelkit.errors import ModelNameError
    from modelkit.names import ModelName

    if not isinstance(name, str) or not name:
        return False
    try:
        return ModelName.parse(name).matches(ModelName.parse(model))  # case ignored
    except ModelNameError:
        return False


def _aim(case: Any, model: str, aim: bool) -> Any:
    """``case`` naming ``model`` (when ``aim``) where the operation uses one, with an input
    for it if it has none."""
    path = case.operation.path
    name = AIMED.get(path, "model")
    if not aim or not name:
        return case
    if path == "/v1/models/{model}":
        case.path_parameters = {**(case.path_parameters or {}), "model": model}
    elif isinstance(case.body, dict):
        case.body[name] = model
        for key, value in AIMED_INPUT.get(path, {}).items():
            case.body.setdefault(key, copy.deepcopy(value))
    return case


def _harmless(case: Any, model: str) -> bool:
    """False for a request that would delete or overwrite ``model``."""
    fields = WRITES.get(case.operation.path, ())
    body = case.body if isinstance(case.body, dict) else {}
    return not any(_same_model(body.get(name), model) for name in fields)


def _check(failure: Exception) -> str:
    checks: tuple[str, ...] = getattr(type(failure), "checks", ())
    return checks[0] if checks else type(failure).__name__


def _title(failure: Exception) -> str:
    return str(getattr(failure, "title", "")) or type(failure).__name__


def fuzz(
    url: str,
    *,
    examples: int,
    seconds: float,
    model: str = MODEL,
    seed: int | None = None,
    progress: bool = False,
) -> FuzzReport:
    """``examples`` generated requests per operation of ``url``'s /openapi.json (valid and
    invalid ones), within about ``seconds`` in all; every answer checked."""
    import requests
    import schemathesis

    _register_ndjson(schemathesis)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path not in EXCLUDED]
    report = FuzzReport()
    session = requests.Session()
    session.trust_env = False  # straight to the loopback server, whatever the environment
    started = time.monotonic()
    for done, operation in enumerate(operations):
        label = f"{operation.method.upper()} {operation.path}"
        left = started + seconds - time.monotonic()
        deadline = time.monotonic() + left / (len(operations) - done)
        _OperationTest(operation, label, url, session, model, report, examples, deadline).test(seed)
        if progress:
            print(f"{label}: {report.examples[label]} examples", flush=True)
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _OperationTest:
    operation: Any
    label: str
    url: str
    session: Any
    model: str
    report: FuzzReport
    examples: int
    deadline: float = 0.0

    def example(self, case: Any) -> None:
        """One request and the checks of its answer."""
        import requests
        from schemathesis.checks import (
            content_type_conformance,
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
        )
        from schemathesis.core.failures import Failure, FailureGroup

        if time.monotonic() > self.deadline:
            return  # out of time: the rest of the examples are skipped
        report, label = self.report, self.label
        report.examples[label] += 1
        try:
            response = case.call(base_url=self.url, session=self.session, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as err:
            report.fail("connection", label, type(err).__name__, str(err))
            return
        report.statuses[response.status_code] += 1
        if response.status_code < 300:
            report.answered[label] += 1
        checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.fail(_check(failure), label, _title(failure), _describe(case, failure))
        except Failure as failure:
            report.fail(_check(failure), label, _title(failure), _describe(case, failure))

    def test(self, seed: int | None) -> None:
        """Runs :meth:`example` on ``examples`` generated cases."""
        import hypothesis
        from hypothesis import HealthCheck, Phase, settings
        from hypothesis import strategies as st
        from schemathesis.generation import GenerationMode

        modes = [
            self.operation.as_strategy(generation_mode=mode)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
        model = self.model
        strategy = st.builds(_aim, st.one_of(modes), st.just(model), st.booleans()).filter(
            lambda case: _harmless(case, model)
        )
        test = settings(
            max_examples=self.examples,
            deadline=None,
            database=None,
            derandomize=seed is None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(hypothesis.given(case=strategy)(self.example))
        if seed is not None:
            test = hypothesis.seed(seed)(test)
        test()


def _describe(case: Any, failure: Exception) -> str:
    body = json.dumps(case.body, default=repr)[:500] if isinstance(case.body, dict | list) else "-"
    return f"{failure}\nrequest body: {body}; path parameters: {case.path_parameters}"


_NDJSON_REGISTERED: list[bool] = []


def _register_ndjson(schemathesis: Any) -> None:
    """NDJSON answers read as the array of their lines (how openapi.py documents them)."""
    if _NDJSON_REGISTERED:
        return

    @schemathesis.deserializer("application/x-ndjson")
    def lines(_: Any, response: Any) -> list[Any]:
        return [json.loads(line) for line in response.content.splitlines() if line.strip()]

    _NDJSON_REGISTERED.append(True)


def build_store(root: Path, gguf: Path) -> Path:
    """A store at ``root`` holding ``tiny:latest`` built from ``gguf``."""
    from modelkit.build import BuildCache, execute_build, plan_build
    from modelkit.modelfile import parse
    from modelkit.names import ModelName
    from modelkit.store import Store

    store = Store(root)
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse(MODELFILE.format(path=gguf)), store, cache)
    execute_build(plan, ModelName.parse(MODEL), store, cache)
    return store.root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation (default 200)")
    parser.add_argument(
        "--seconds", type=float, default=1800.0, help="time bound in all (default 1800)"
    )
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: derandomized)")
    args = parser.parse_args(argv)
    fixture = load_module("modelkit_tests_fixture_server", SERVER_FIXTURE)
    tiny = load_module("modelkit_tests_fixture_tiny_gguf", TINY_GGUF)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gguf = tiny.write_tiny_gguf(work / "tiny.gguf", chat_template=tiny.CHATML_TEMPLATE)
        models = build_store(work / "models", gguf)
        with fixture.running_server(models, work, env=SERVER_ENV) as server:
            report = fuzz(
                server.url,
                examples=args.examples,
                seconds=args.seconds,
                seed=args.seed,
                progress=True,
            )
            alive = server.process.poll() is None
            log = server.log_text()
    print(report.table())
    errors = [line for line in log.splitlines() if " ERROR " in line]
    if errors:  # runner crashes and the like: the cause of 500s, if any
        print(f"the server logged {len(errors)} error(s), the first ones:")
        print("\n".join(f"  {line[:300]}" for line in errors[:10]))
    tracebacks = log.count("Traceback")
    if tracebacks:
        print(f"the server log holds {tracebacks} traceback(s):\n{log[-4000:]}")
    if not alive:
        print("the server died")
    return 1 if report.failures or tracebacks or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
