"""The checks ``modelkit build`` runs on a finished but untagged model: a smoke check (it
loads, its template renders a system and a user message, it generates a few tokens) and,
with ``--test SPEC``, a test spec. A failure raises CheckError, so no tag is written."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkit.config import Settings
from modelkit.errors import CheckError, ModelkitError
from modelkit.store import ModelView, Store, StoredManifest, read_gguf_info, view_stored

if TYPE_CHECKING:  # the spec runner (jsonschema, httpx) loads only when --test needs it
    from modelkit.validate.runner import CaseResult
    from modelkit.validate.spec import TestSpec

SMOKE_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello."},
]
SMOKE_OPTIONS = {"num_predict": 4, "temperature": 0, "seed": 0}
_CACHE_LIMIT = 256


@dataclass(frozen=True)
class SmokeResult:
    load_seconds: float
    prompt_tokens: int
    generated: int
    text: str
    cached: bool = False
    skipped: str = ""
    """Why the check did not run (no llama.cpp runtime installed), else empty."""
    embedding: int = 0
    """For an embedding model (checked by embedding a text): the vector's length."""


def runtime_version() -> str | None:
    """The installed llama-cpp-python version, or None when the runtime is not installed.

    Read from the package metadata: importing llama_cpp loads the native library (~0.2 s),
    which a rebuild whose check already passed never needs."""
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None


class PassedChecks:
    """Manifest digests that passed the smoke check with a given runtime version, so a
    rebuild that changes nothing does not load the model again.

    Kept in ``<store>/.modelkit/checks.json``; only a hint (a damaged file is a cold one)."""

    def __init__(self, store_root: Path) -> None:
        self.path = store_root / ".modelkit" / "checks.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def passed(self, digest: str, runtime: str) -> bool:
        return self._load().get(digest) == runtime

    def remember(self, digest: str, runtime: str) -> None:
        entries = self._load()
        entries.pop(digest, None)
        entries[digest] = runtime
        kept = dict(list(entries.items())[-_CACHE_LIMIT:])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".checks-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(kept, out)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def is_embedding_model(store: Store, view: ModelView) -> bool:
    """Whether the weights declare a pooling type: Ollama then gives the model the
    ``embedding`` capability instead of ``completion``."""
    if view.model is None:
        return False
    try:
        info = read_gguf_info(store.blob_path(view.model.digest))
    except (OSError, ModelkitError):
        return False  # loading it reports the problem
    return f"{info.architecture}.pooling_type" in info.metadata


def _smoke_embedding(service: Any, model: str) -> SmokeResult:
    started = time.perf_counter()
    result = service.embed(model, [SMOKE_MESSAGES[1]["content"]])
    if not result.embeddings or not result.embeddings[0]:
        raise CheckError("the embedding model returned no vector")
    seconds = time.perf_counter() - started
    return SmokeResult(
        seconds, result.prompt_eval_count, 0, "", embedding=len(result.embeddings[0])
    )


def _smoke(service: Any, model: str) -> SmokeResult:
    from modelkit.runtime.service import ChatRequest

    started = time.perf_counter()
    request = ChatRequest(model=model, messages=list(SMOKE_MESSAGES), options=dict(SMOKE_OPTIONS))
    text: list[str] = []
    prompt_tokens = generated = 0
    for event in service.chat(request):
        text.append(event.content + event.thinking)
        if event.done and event.stats:
            prompt_tokens, generated = event.stats.prompt_eval_count, event.stats.eval_count
    if generated < 1:
        raise CheckError("the model generated no token")
    return SmokeResult(time.perf_counter() - started, prompt_tokens, generated, "".join(text))


@dataclass
class BuildCheck:
    """What to check before a build writes its tag; called with the staged manifest.

    ``smoke``: run the smoke check; ``spec``: a test spec to run; ``report`` receives the
    smoke result and the spec's case results for the CLI to print."""

    settings: Settings
    smoke: bool = True
    spec: TestSpec | None = None
    jobs: int = 1
    on_smoke: Callable[[SmokeResult], None] | None = None
    on_spec: Callable[[str, list[CaseResult]], None] | None = None

    def __call__(self, staged: StoredManifest) -> None:
        runtime = runtime_version()
        store = Store(self.settings.models)
        if runtime is None:
            if self.spec is not None:
                raise CheckError(
                    "--test needs the llama.cpp runtime: pip install 'modelkit[runtime]'"
                )
            self._tell(SmokeResult(0, 0, 0, "", skipped="llama-cpp-python is not installed"))
            return
        cache = PassedChecks(store.root)
        run_smoke = self.smoke and not cache.passed(staged.digest, runtime)
        if self.smoke and not run_smoke:
            self._tell(SmokeResult(0, 0, 0, "", cached=True))
        if not run_smoke and self.spec is None:
            return
        self._run(store, staged, run_smoke)
        if run_smoke:
            cache.remember(staged.digest, runtime)

    def _tell(self, result: SmokeResult) -> None:
        if self.on_smoke is not None:
            self.on_smoke(result)

    def _run(self, store: Store, staged: StoredManifest, run_smoke: bool) -> None:
        from modelkit.runtime.service import InferenceService

        settings = replace(
            self.settings,
            num_parallel=max(self.jobs, 1),
            max_loaded_models=1,
        )
        service = InferenceService(store, settings)
        view = view_stored(store, staged)
        service.stage(view)
        model = view.name.display
        try:
            if run_smoke:
                smoke = _smoke_embedding if is_embedding_model(store, view) else _smoke
                try:
                    self._tell(smoke(service, model))
                except ModelkitError as err:
                    raise CheckError(
                        f"smoke check failed, so {model} was not tagged: {err}"
                        " (--no-check skips the check)"
                    ) from None
            if self.spec is not None:
                self._run_spec(service, model)
        finally:
            service.shutdown()

    def _run_spec(self, service: Any, model: str) -> None:
        from modelkit.validate.runner import InProcessBackend, run_spec

        assert self.spec is not None
        backend = InProcessBackend(self.settings, service=service)
        results = run_spec(self.spec, backend, model, self.spec.cases, self.jobs)
        if self.on_spec is not None:
            self.on_spec(model, results)
        failed = [r for r in results if r.status != "pass"]
        if failed:
            raise CheckError(
                f"{len(failed)} of {len(results)} test cases in {self.spec.path} failed"
                f" ({', '.join(r.name for r in failed)}), so {model} was not tagged"
            )
