"""The inference service: chat, generate and embed requests in, events out — the scheduler,
the engine, prompt building and output parsing put together, without any HTTP.

Each request is a :class:`Job` (the checked request: its model, options, and how to start it
once a slot is leased). :meth:`InferenceService.run` waits for the slot in the calling thread
(CLI, build checks, in-process tests); :meth:`InferenceService.run_async` waits on the event
loop without holding a thread (the server), so queued requests cannot starve running ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import anyio.to_thread

from modelkit.config import Settings
from modelkit.errors import (
    InferenceError,
    ModelNameError,
    ModelNotFoundError,
    RequestError,
    StoreError,
)
from modelkit.names import ModelName
from modelkit.runtime.constrain import gbnf_for_format
from modelkit.runtime.engine.results import Chunk, GenerationStats
from modelkit.runtime.gbnf import check_gbnf
from modelkit.runtime.images import check_image
from modelkit.runtime.logprobs import MAX_TOP_LOGPROBS, Logprob
from modelkit.runtime.options import LoadParams, Options, load_params, resolve_options
from modelkit.runtime.parsing import ThinkingParser, ToolCall, ToolCallParser, thinking_tags
from modelkit.runtime.prompting import (
    IMAGE_PROMPT_TOKENS,
    ChatTemplate,
    Messages,
    chat_messages,
    fit_to_context,
    image_count,
    tag_images,
)
from modelkit.runtime.runner import RunnerProcess, RunnerStoppedError
from modelkit.runtime.scheduler import Lease, RunnerInfo, Scheduler
from modelkit.store import GGUFInfo, ModelView, Store, read_gguf_info, view_model
from modelkit.template import GoTemplate

log = logging.getLogger(__name__)


# Raw prompts bypass templates entirely; this stands in so no model template is read.
RAW_TEMPLATE = ChatTemplate("{{ .Prompt }}", go=GoTemplate("{{ .Prompt }}"))


@dataclass(frozen=True)
class ModelKey:
    """What a loaded runner is: a model name at one manifest digest (a rebuild reloads)."""

    name: str
    digest: str


class Runner:
    """A loaded model — its runner process — with what requests need next to it: its
    template and view."""

    def __init__(self, view: ModelView, model: RunnerProcess, template: ChatTemplate) -> None:
        self.view = view
        self.model = model
        self.template = template

    @property
    def size(self) -> int:
        return self.view.stored.size

    def close(self) -> None:
        self.model.close()


CRASH_WINDOW = 300.0
"""Seconds over which a model's runner crashes are counted (Ollama has no such guard)."""
CRASH_LIMIT = 3
"""Crashes within :data:`CRASH_WINDOW` after which a model is refused instead of restarted."""


VISION_MIN_CTX = 2048
"""The least context a model with a projector gets, as in Ollama: an image takes hundreds of
positions on a real model."""


class _SafeRetry(Exception):
    """The runner died at its first decode: load again with the safe kernels and retry."""


class ServiceObserver(Protocol):
    """What the service reports as it works (the server turns it into metrics). Called from
    whichever thread does the work; must be quick and must not raise (errors are logged)."""

    def model_loaded(self, model: str, seconds: float, ok: bool) -> None:
        """A runner load for ``model`` ended after ``seconds``, successfully or not."""

    def generation_finished(
        self, model: str, stats: GenerationStats, first_token_seconds: float | None
    ) -> None:
        """A chat or generate answer ended with ``stats``; ``first_token_seconds`` runs from
        asking for the model's slot (queueing and loading included) to the first token."""


@dataclass
class Event:
    """One step of a response: deltas, tool calls, and on the last one ``stats``."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: bool = False
    done_reason: str = ""
    stats: GenerationStats | None = None
    load_duration: int = 0
    logprobs: list[Logprob] = field(default_factory=list)


@dataclass
class ChatRequest:
    model: str
    messages: Messages = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: Any = None
    grammar: str | None = None
    options: dict[str, Any] | None = None
    think: bool | str | None = None
    keep_alive: float | None = None
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class GenerateRequest:
    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    format: Any = None
    grammar: str | None = None
    options: dict[str, Any] | None = None
    think: bool | str | None = None
    keep_alive: float | None = None
    images: list[str] = field(default_factory=list)
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0


def _top_logprobs(logprobs: bool, top: int) -> int | None:
    """How many alternatives to report with each token's log probability; None: none asked."""
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise RequestError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return top if (logprobs or top) else None


@dataclass
class EmbedResult:
    embeddings: list[list[float]]
    prompt_eval_count: int
    load_duration: int


class InferenceService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._templates: dict[str, ChatTemplate] = {}
        self._staged: dict[str, ModelView] = {}
        # Runner deaths per model (the crash-loop guard), and the models that crashed
        # at their first decode and now load with llama.cpp's safe kernels.
        self._crashes: dict[ModelKey, deque[tuple[float, str]]] = {}
        self._safe_kernels: set[str] = set()
        self._gguf: dict[str, GGUFInfo | None] = {}  # header facts by model blob digest
        self._lock = threading.Lock()
        self.observer: ServiceObserver | None = None
        self.scheduler: Scheduler[ModelKey, LoadParams, Runner] = Scheduler(
            self._load,
            max_loaded=settings.max_loaded_models,
            num_parallel=settings.num_parallel,
            max_queue=settings.max_queue,
            default_keep_alive=settings.keep_alive,
        )

    # -- models ------------------------------------------------------------------------------

    def view(self, name: str) -> ModelView:
        try:
            parsed = ModelName.parse(name)
            staged = self._staged.get(parsed.display.lower())
            return staged if staged is not None else view_model(self.store, parsed)
        except (ModelNotFoundError, ModelNameError):
            raise ModelNotFoundError(f"model '{name}' not found") from None

    def stage(self, view: ModelView) -> None:
        """Serve ``view`` under its name although its manifest is not written yet (a build
        tests the model before it tags it)."""
        self._staged[view.name.display.lower()] = view

    def template_for(self, view: ModelView) -> ChatTemplate:
        # Reading the GGUF's chat template and compiling it costs tens of ms (a 150k-token
        # vocabulary to skip); a model's template never changes for a given manifest.
        digest = view.stored.digest
        template = self._templates.get(digest)
        if template is None:
            template = ChatTemplate.for_stored_model(self.store, view)
            if len(self._templates) >= 64:
                self._templates.pop(next(iter(self._templates)))
            self._templates[digest] = template
        return template

    def _observe(self, report: Callable[[ServiceObserver], None]) -> None:
        if self.observer is not None:
            try:
                report(self.observer)
            except Exception:
                log.exception("a service observer failed")

    def _load(self, key: ModelKey, spec: LoadParams) -> Runner:
        """The scheduler's loader: :meth:`_start_runner`, timed for the observer."""
        started = time.perf_counter()
        ok = False
        try:
            runner = self._start_runner(key, spec)
            ok = True
            return runner
        finally:
            seconds = time.perf_counter() - started
            self._observe(lambda o: o.model_loaded(key.name, seconds, ok))

    def _start_runner(self, key: ModelKey, spec: LoadParams) -> Runner:
        """Start the model's runner process."""
        view = self.view(key.name)
        if view.model is None:
            raise InferenceError(f"model {view.name.display} has no model weights layer")
        self._refuse_crash_loop(key)
        holder: list[Runner] = []
        process = RunnerProcess(
            key.name,
            self.store.blob_path(view.model.digest),
            spec,
            adapters=[self.store.blob_path(a.digest) for a in view.adapters],
            projector=self.store.blob_path(view.projectors[0].digest) if view.projectors else None,
            params=view.parameters,
            load_timeout=self.settings.load_timeout,
            on_exit=lambda stopped: self._runner_exited(key, holder, stopped),
        )
        runner = Runner(view, process, self.template_for(view))
        holder.append(runner)
        if not process.alive:  # it died between loading and here
            raise RunnerStoppedError(
                f"model runner for {key.name} stopped: {process.exit_reason}",
                before_first_token=True,
            )
        return runner

    def _runner_exited(self, key: ModelKey, holder: list[Runner], process: RunnerProcess) -> None:
        """A runner died by itself: count it, and forget it so the next request starts anew."""
        with self._lock:
            crashes = self._crashes.setdefault(key, deque(maxlen=CRASH_LIMIT))
            crashes.append((time.monotonic(), process.exit_reason or "stopped"))
        for runner in holder:
            self.scheduler.discard(key, runner)

    def _refuse_crash_loop(self, key: ModelKey) -> None:
        with self._lock:
            crashes = self._crashes.get(key, deque())
            recent = [(t, why) for t, why in crashes if time.monotonic() - t < CRASH_WINDOW]
        if len(recent) >= CRASH_LIMIT:
            raise InferenceError(
                f"model runner for {key.name} stopped {len(recent)} times in the last "
                f"{CRASH_WINDOW / 60:.0f} minutes (last: {recent[-1][1]}); not starting it again "
                "for now: check the model, or restart the server"
            )

    def _claim(self, job: Job) -> tuple[ModelKey, LoadParams, Options]:
        self._check_limits(job.options or {})
        opts = resolve_options(job.view.parameters, job.options, self.settings)
        if not self.settings.max_num_ctx and "num_ctx" in (job.options or {}):
            self._check_kv_memory(job.view, opts)
        if job.view.projectors and opts.num_ctx < VISION_MIN_CTX:
            opts = replace(opts, num_ctx=VISION_MIN_CTX)  # the engine still caps it at training
        cap = self.settings.max_num_predict
        if cap and not 0 < opts.num_predict <= cap:  # unlimited (or the model's own, larger)
            opts = replace(opts, num_predict=cap)
        key = ModelKey(job.view.name.display, job.view.stored.digest)
        spec = load_params(opts, self.settings)
        if key.digest in self._safe_kernels:
            spec = replace(spec, safe_kernels=True)
        return key, spec, opts

    def _check_limits(self, options: dict[str, Any]) -> None:
        """Refuse request options over the server's caps (the client must ask for less)."""
        caps = (
            ("num_ctx", self.settings.max_num_ctx, "MODELKIT_MAX_NUM_CTX"),
            ("num_predict", self.settings.max_num_predict, "MODELKIT_MAX_NUM_PREDICT"),
        )
        for option, cap, setting in caps:
            value = options.get(option)
            if cap and isinstance(value, int | float) and value > cap:
                raise RequestError(
                    f"{option} {value:g} is over this server's limit of {cap} ({setting})"
                )

    def _check_kv_memory(self, view: ModelView, opts: Options) -> None:
        """Without MODELKIT_MAX_NUM_CTX, a request's num_ctx (up to the model's trained
        context, as the engine clamps it) may not ask for a KV cache larger than the memory
        this machine has available."""
        info = self._gguf_info(view.model.digest) if view.model else None
        per_cell = info.kv_bytes_per_cell() if info else None
        available = memory_available()
        if info is None or not per_cell or available is None:
            return
        n_ctx = min(opts.num_ctx, info.context_length or opts.num_ctx)
        needed = per_cell * n_ctx * self.settings.num_parallel
        if needed > available:
            raise RequestError(
                f"num_ctx {opts.num_ctx} needs {needed / 2**30:.1f} GiB of KV cache, more than "
                f"the {available / 2**30:.1f} GiB of memory available (MODELKIT_MAX_NUM_CTX)"
            )

    def _gguf_info(self, digest: str) -> GGUFInfo | None:
        with self._lock:
            if digest in self._gguf:
                return self._gguf[digest]
        try:
            info: GGUFInfo | None = read_gguf_info(self.store.blob_path(digest))
        except (StoreError, OSError):
            info = None
        with self._lock:
            self._gguf[digest] = info
        return info

    def _check_images(self, view: ModelView, images: list[Any]) -> None:
        """A request's images: within this server's limits, for a model with a projector,
        and each one decoding (JPEG, PNG or WebP), all before any model loads."""
        if not images:
            return
        limits = self.settings
        if len(images) > limits.max_images:
            raise RequestError(
                f"{len(images)} images is over this server's limit of {limits.max_images} "
                "(MODELKIT_MAX_IMAGES)"
            )
        for image in images:
            size = len(image) * 3 // 4 if isinstance(image, str) else len(image)  # base64
            if size > limits.max_image_bytes:
                raise RequestError(
                    f"an image of {size} bytes is over this server's limit of "
                    f"{limits.max_image_bytes} (MODELKIT_MAX_IMAGE_BYTES)"
                )
        if not view.projectors:
            raise RequestError(f"{view.name} does not support images (it has no vision projector)")
        for index, image in enumerate(images):
            check_image(image, index)

    def acquire(self, job: Job) -> Slot:
        """A lease on ``job``'s model loaded as its options need; blocks the thread."""
        key, spec, opts = self._claim(job)
        started = time.perf_counter_ns()
        lease = self.scheduler.acquire(key, spec, job.keep_alive)
        return Slot(lease, opts, time.perf_counter_ns() - started)

    async def acquire_async(self, job: Job) -> Slot:
        """:meth:`acquire` for the event loop: queued, it holds no thread."""
        key, spec, opts = self._claim(job)
        started = time.perf_counter_ns()
        lease = await self.scheduler.acquire_async(key, spec, job.keep_alive)
        return Slot(lease, opts, time.perf_counter_ns() - started)

    def run(self, job: GenerationJob) -> Iterator[Event]:
        """Wait for a slot (blocking) and start ``job``; the events hold the slot until they
        end or are closed. A runner that dies at its first decode is retried once with
        llama.cpp's safe kernels."""
        try:
            return self._start(job, self.acquire(job))
        except _SafeRetry:
            return self._start(job, self.acquire(job))

    async def run_async(self, job: GenerationJob) -> Iterator[Event]:
        """:meth:`run` for the event loop; the start (prompt tokenizing, the first decode)
        runs in a thread."""
        try:
            slot = await self.acquire_async(job)
            return await anyio.to_thread.run_sync(self._start, job, slot)
        except _SafeRetry:
            slot = await self.acquire_async(job)
            return await anyio.to_thread.run_sync(self._start, job, slot)

    def _start(self, job: GenerationJob, slot: Slot) -> Iterator[Event]:
        try:
            return job.start(slot)
        except BaseException as err:
            slot.lease.release()
            if isinstance(err, RunnerStoppedError) and self._first_decode_crash(slot, err):
                raise _SafeRetry() from err
            raise

    def _first_decode_crash(self, slot: Slot, err: RunnerStoppedError) -> bool:
        """Whether ``err`` is a fresh runner dying at its first decode with the fast kernels:
        then the model keeps llama.cpp's safe kernels while this server runs."""
        lease = slot.lease
        if not err.before_first_token or lease.runner.model.decoded or lease.spec.safe_kernels:
            return False
        with self._lock:
            self._safe_kernels.add(lease.key.digest)
        log.warning("%s; loading %s again with llama.cpp's safe CPU kernels", err, lease.key.name)
        return True

    def unload(self, view: ModelView) -> None:
        self.scheduler.unload(ModelKey(view.name.display, view.stored.digest))

    def loaded(self) -> list[RunnerInfo[ModelKey, LoadParams, Runner]]:
        return self.scheduler.loaded()

    def shutdown(self) -> None:
        self.scheduler.shutdown()

    # -- chat and generate -------------------------------------------------------------------

    def _think(self, template: ChatTemplate, think: bool | str | None, model: str) -> bool:
        capable = "thinking" in template.capabilities
        if think is None:
            return capable
        wanted = think if isinstance(think, bool) else think in ("low", "medium", "high", "max")
        if wanted and not capable:
            raise RequestError(f'"{model}" does not support thinking')
        return bool(wanted)

    def _chat_prompt(
        self, req: ChatRequest
    ) -> tuple[ModelView, ChatTemplate, bool, Messages, list[Any]]:
        """The checks of a chat request, then its model, template, think, its messages with
        their images tagged, and the images in tag order."""
        view = self.view(req.model)
        messages, images = tag_images(chat_messages(view, req.messages))
        self._check_images(view, images)
        template = self.template_for(view)
        if req.tools and "tools" not in template.capabilities:
            raise RequestError(f"{view.name} does not support tools")
        think = self._think(template, req.think, req.model)
        return view, template, think, messages, images

    def render_chat(self, req: ChatRequest) -> str:
        """The prompt ``req`` would run, without loading the model (nor truncating it to
        the context: that needs the tokenizer)."""
        _, template, think, messages, _ = self._chat_prompt(req)
        return template.render(messages, tools=req.tools, think=req.think if think else None)

    def chat(self, req: ChatRequest) -> Iterator[Event]:
        """Check the request, then load the model (waiting in this thread) and stream the
        answer."""
        return self.run(self.chat_job(req))

    def chat_job(self, req: ChatRequest) -> GenerationJob:
        """The checked chat request, ready to run."""
        view, _, think, messages, images = self._chat_prompt(req)
        grammar = _grammar(req.format, req.grammar)
        return self._job(
            view,
            req.options,
            req.keep_alive,
            lambda runner, opts: fit_to_context(
                lambda msgs: runner.template.render(
                    msgs, tools=req.tools, think=req.think if think else None
                ),
                partial(_count_tokens, runner),
                messages,
                opts.num_ctx,
                truncate=req.truncate,
            ),
            images=images,
            grammar=grammar,
            think=think,
            tools=req.tools,
            truncate=req.truncate,
            shift=req.shift,
            top_logprobs=_top_logprobs(req.logprobs, req.top_logprobs),
        )

    def _generate_prompt(self, req: GenerateRequest) -> tuple[ModelView, ChatTemplate, bool]:
        """The checks of a generate request, then its model, template and think."""
        view = self.view(req.model)
        if req.raw and (req.template or req.system or req.context):
            raise RequestError("raw mode does not support template, system, or context")
        self._check_images(view, req.images)
        template = (
            ChatTemplate(req.template, go=GoTemplate(req.template))
            if req.template
            else RAW_TEMPLATE
            if req.raw
            else self.template_for(view)
        )
        if req.suffix and "insert" not in template.capabilities:
            raise RequestError(f"{view.name} does not support insert")
        think = self._think(template, req.think, req.model) if not req.raw else False
        return view, template, think

    @staticmethod
    def _generate_messages(req: GenerateRequest, view: ModelView) -> Messages:
        """The messages of a templated generate, the request's images tagged in the last."""
        system = req.system if req.system is not None else view.system
        messages: Messages = [{"role": "system", "content": system}] if system else []
        if not req.context:
            messages += [dict(m) for m in view.messages]
        user: dict[str, Any] = {"role": "user", "content": req.prompt}
        if req.images:
            user["images"] = req.images
        messages.append(user)
        return tag_images(messages)[0]

    def render_generate(self, req: GenerateRequest) -> str:
        """The prompt ``req`` would run, without loading the model (a ``context`` is left
        out, as detokenizing it needs the model; nothing is truncated)."""
        view, template, think = self._generate_prompt(req)
        if req.raw:
            return req.prompt
        if req.suffix:
            return template.render([], prompt=req.prompt, suffix=req.suffix)
        messages = self._generate_messages(req, view)
        return template.render(messages, think=req.think if think else None)

    def generate(self, req: GenerateRequest) -> Iterator[Event]:
        """Like :meth:`chat`, for a generate request."""
        return self.run(self.generate_job(req))

    def generate_job(self, req: GenerateRequest) -> GenerationJob:
        """The checked generate request, ready to run."""
        view, template, think = self._generate_prompt(req)
        grammar = _grammar(req.format, req.grammar)

        def build_prompt(runner: Runner, opts: Options) -> tuple[str, int]:
            if req.raw:
                return req.prompt, 0
            context = runner.model.detokenize(req.context) if req.context else ""
            if req.suffix:
                return context + template.render([], prompt=req.prompt, suffix=req.suffix), 0
            messages = self._generate_messages(req, view)
            text, dropped = fit_to_context(
                lambda msgs: template.render(msgs, think=req.think if think else None),
                partial(_count_tokens, runner),
                messages,
                opts.num_ctx,
                truncate=req.truncate,
            )
            return context + text, dropped

        return self._job(
            view,
            req.options,
            req.keep_alive,
            build_prompt,
            grammar=grammar,
            think=think,
            tools=None,
            truncate=req.truncate,
            shift=req.shift,
            top_logprobs=_top_logprobs(req.logprobs, req.top_logprobs),
            images=req.images,
        )

    def _job(
        self,
        view: ModelView,
        options: dict[str, Any] | None,
        keep_alive: float | None,
        build_prompt: Callable[[Runner, Options], tuple[str, int]],
        *,
        grammar: str | None,
        think: bool,
        tools: list[dict[str, Any]] | None,
        truncate: bool,
        shift: bool,
        top_logprobs: int | None,
        images: list[str] | None = None,
    ) -> GenerationJob:
        def start(slot: Slot) -> Iterator[Event]:
            begun = time.perf_counter() - slot.waited / 1e9
            runner = slot.lease.runner
            prompt, dropped = build_prompt(runner, slot.options)
            if dropped:
                log.warning(
                    "%s: older messages (%d tokens) dropped to fit num_ctx %d",
                    slot.lease.key.name,
                    dropped,
                    slot.options.num_ctx,
                )
            chunks = runner.model.generate(
                prompt,
                slot.options,
                truncate=truncate,
                grammar=grammar,
                top_logprobs=top_logprobs,
                shift=shift,
                images=images or (),
            )
            first, chunks = _first_ready(chunks)  # the prompt's decode: a bad runner fails here
            events = self._events(
                slot.lease,
                chunks,
                prompt,
                think=think,
                tools=tools,
                waited=slot.waited,
                begun=begun,
            )
            return EventStream(events, truncated_tokens=dropped + (first.truncated if first else 0))

        return GenerationJob(view, options, keep_alive, start)

    def _events(
        self,
        lease: Lease[ModelKey, LoadParams, Runner],
        chunks: Iterator[Any],
        prompt: str,
        *,
        think: bool,
        tools: list[dict[str, Any]] | None,
        waited: int,
        begun: float | None = None,
    ) -> Generator[Event, None, None]:
        template = lease.runner.template
        tags = thinking_tags(template.text) if think else None
        thinker = None
        if tags:
            thinker = ThinkingParser(tags[0], tags[1], inside=prompt.rstrip().endswith(tags[0]))
        names = {str(t.get("function", {}).get("name", "")) for t in tools or []}
        tooler = ToolCallParser(template.tool_tag, names) if tools else None
        # Log probabilities of text a parser holds back go out with the next event.
        logprobs: list[Logprob] = []
        first_token: float | None = None
        try:
            for chunk in chunks:
                if first_token is None and begun is not None:
                    first_token = time.perf_counter() - begun
                logprobs += chunk.logprobs
                thinking, content = thinker.feed(chunk.text) if thinker else ("", chunk.text)
                calls: list[ToolCall] = []
                if chunk.done and thinker:
                    more_thinking, more = thinker.finish()
                    thinking, content = thinking + more_thinking, content + more
                if tooler:
                    content, calls = tooler.feed(content)
                    if chunk.done:
                        rest, more_calls = tooler.finish()
                        content, calls = content + rest, calls + more_calls
                if chunk.done:
                    if chunk.stats is not None:
                        self._observe(partial(_finished, lease.key.name, chunk.stats, first_token))
                    yield Event(
                        content,
                        thinking,
                        calls,
                        done=True,
                        done_reason=chunk.stats.done_reason if chunk.stats else "stop",
                        stats=chunk.stats,
                        load_duration=waited,
                        logprobs=logprobs,
                    )
                elif content or thinking or calls:
                    yield Event(content, thinking, calls, logprobs=logprobs)
                    logprobs = []
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            lease.release()

    # -- embeddings --------------------------------------------------------------------------

    def embed_job(
        self,
        model: str,
        inputs: list[str],
        *,
        truncate: bool = True,
        dimensions: int | None = None,
        options: dict[str, Any] | None = None,
        keep_alive: float | None = None,
    ) -> EmbedJob:
        """An embedding request; run it with :meth:`embed` or :meth:`embed_async`."""
        return EmbedJob(self.view(model), options, keep_alive, inputs, truncate, dimensions)

    @staticmethod
    def embed_with(job: EmbedJob, slot: Slot) -> EmbedResult:
        """Embed ``job``'s inputs on the leased model, then release the slot."""
        with slot.lease:
            if not job.inputs:
                return EmbedResult([], 0, slot.waited)
            result = slot.lease.runner.model.embed_with_stats(
                job.inputs, truncate=job.truncate, dimensions=job.dimensions
            )
        return EmbedResult(result.vectors, result.prompt_eval_count, slot.waited)

    def embed(self, model: str, inputs: list[str], **kwargs: Any) -> EmbedResult:
        """Embed ``inputs`` with ``model`` (arguments as :meth:`embed_job`), waiting here."""
        job = self.embed_job(model, inputs, **kwargs)
        return self.embed_with(job, self.acquire(job))

    async def embed_async(self, model: str, inputs: list[str], **kwargs: Any) -> EmbedResult:
        """:meth:`embed` for the event loop (the checks and the embedding run in threads)."""
        job = await anyio.to_thread.run_sync(partial(self.embed_job, model, inputs, **kwargs))
        slot = await self.acquire_async(job)
        return await anyio.to_thread.run_sync(self.embed_with, job, slot)

    def load_only(
        self, model: str, keep_alive: float | None, options: dict[str, Any] | None = None
    ) -> int:
        """Load ``model`` as ``options`` need it (a generate with no prompt); returns the
        wait in ns."""
        slot = self.acquire(Job(self.view(model), options, keep_alive))
        slot.lease.release()
        return slot.waited

    async def load_only_async(
        self, model: str, keep_alive: float | None, options: dict[str, Any] | None = None
    ) -> int:
        """:meth:`load_only` for the event loop."""
        view = await anyio.to_thread.run_sync(self.view, model)
        slot = await self.acquire_async(Job(view, options, keep_alive))
        slot.lease.release()
        return slot.waited


@dataclass
class Slot:
    """A leased slot of a loaded model, with the request's resolved options and how long the
    request waited for it (ns: Ollama's load_duration)."""

    lease: Lease[ModelKey, LoadParams, Runner]
    options: Options
    waited: int


@dataclass
class Job:
    """A checked request: which model, and loaded how (its options and keep-alive)."""

    view: ModelView
    options: dict[str, Any] | None
    keep_alive: float | None


@dataclass
class GenerationJob(Job):
    """A chat or generate request: ``start`` renders its prompt on the leased model and
    returns the answer's events."""

    start: Callable[[Slot], Iterator[Event]]


@dataclass
class EmbedJob(Job):
    """An embedding request."""

    inputs: list[str]
    truncate: bool = True
    dimensions: int | None = None


def _finished(
    model: str, stats: GenerationStats, first_token: float | None, observer: ServiceObserver
) -> None:
    observer.generation_finished(model, stats, first_token)


def memory_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _grammar(fmt: Any, grammar: str | None) -> str | None:
    """The GBNF a request constrains its answer with: its raw ``grammar`` (checked here, so
    a mistake is a 400 with its line and column) or the one its ``format`` makes."""
    if grammar:
        if fmt is not None:
            raise RequestError("a request takes format or grammar, not both")
        check_gbnf(grammar)
        return grammar
    return gbnf_for_format(fmt)


def _first_ready(
    chunks: Generator[Chunk, None, None],
) -> tuple[Chunk | None, Generator[Chunk, None, None]]:
    """The first chunk of ``chunks``, produced now (so that a runner that dies on the prompt
    fails the start, where it can be retried), and all of them again; closing the second
    closes ``chunks``."""
    first = next(chunks, None)

    def replay() -> Generator[Chunk, None, None]:
        try:
            if first is not None:
                yield first
            yield from chunks
        finally:
            chunks.close()

    return first, replay()


class EventStream:
    """A generation's events, and what the response's headers tell before them:
    ``truncated_tokens``, the prompt tokens dropped to fit the context (older messages, then
    the prompt's middle)."""

    def __init__(self, events: Generator[Event, None, None], *, truncated_tokens: int = 0) -> None:
        self._events = events
        self.truncated_tokens = truncated_tokens

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        self._events.close()


def _count_tokens(runner: Runner, prompt: str) -> int:
    """The prompt's tokens, an image counted as Ollama counts it when fitting messages."""
    images = image_count(prompt) if runner.view.projectors else 0
    return len(runner.model.tokenize(prompt)) + images * IMAGE_PROMPT_TOKENS
