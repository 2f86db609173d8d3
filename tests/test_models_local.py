"""LocalModel's queue and timeout, and loading without muting the process. A stand-in for
llama.cpp's model object keeps these fast; tests/test_local_model.py runs the real one."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from llama_cpp import _internals

from foreman.errors import ConfigError
from foreman.models import local as local_module
from foreman.models.base import Message, ModelRequest
from foreman.models.defaults import DEFAULT_CALL_TIMEOUT, LOCAL_CALL_TIMEOUT
from foreman.models.local import LocalModel
from foreman.models.retry import RetryPolicy, complete_with_retry

REQUEST = ModelRequest(messages=[Message(role="user", content="hello")])


class HeldLlama:
    """Stands in for ``llama_cpp.Llama``: each call answers once the test releases it."""

    def __init__(self, held: int) -> None:
        self.held = held  # how many of the first calls wait for ``release``
        self.release = threading.Event()
        self.calls = 0
        self.stopper = local_module._Stopper()  # what llama.cpp would ask between steps
        self.stopped = 0  # generations the stopper ended

    def create_chat_completion(self, messages: list[dict[str, str]], **options: Any) -> dict:
        self.calls += 1
        if self.calls <= self.held:
            while not self.release.wait(timeout=0.01):
                if self.stopper.stopping:  # llama.cpp's decode fails with code 2
                    self.stopped += 1
                    raise RuntimeError("llama_decode returned 2")
        return {
            "choices": [{"message": {"content": f"answer {self.calls}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalModel, HeldLlama]]:
    path = tmp_path / "stand-in.gguf"
    path.write_bytes(b"not read")
    llama, thread = HeldLlama(held=1), ThreadPoolExecutor(max_workers=1)
    monkeypatch.setitem(local_module._loaded, path, (llama, thread, llama.stopper))
    yield LocalModel(str(path)), llama
    llama.release.set()
    thread.shutdown()


def test_the_local_model_has_a_longer_default_timeout() -> None:
    assert LocalModel.default_call_timeout == LOCAL_CALL_TIMEOUT > DEFAULT_CALL_TIMEOUT


async def test_time_queued_behind_another_call_is_not_timed(
    held: tuple[LocalModel, HeldLlama],
) -> None:
    model, llama = held
    first = asyncio.create_task(model.complete_within(REQUEST, 30))
    second = asyncio.create_task(model.complete_within(REQUEST, 0.05))
    await asyncio.sleep(0.3)  # the second call waits in the queue 6 times its timeout

    assert not second.done()
    llama.release.set()

    assert (await first).text == "answer 1"
    assert (await second).text == "answer 2"


async def test_the_models_own_work_is_timed_and_retried(
    held: tuple[LocalModel, HeldLlama],
) -> None:
    model, llama = held

    outcome = await complete_with_retry(
        model,
        REQUEST,
        RetryPolicy(max_attempts=2, initial_delay=0),
        call_timeout=0.05,
    )

    # The first attempt ran out of time and its generation was stopped (it would have
    # held the thread until released); the retry then had the model to itself.
    assert outcome.output == "answer 2" and outcome.attempts == 2
    assert llama.stopped == 1


async def test_a_cancelled_generation_stops_and_the_next_call_runs_to_its_end(
    held: tuple[LocalModel, HeldLlama],
) -> None:
    model, llama = held
    llama.held = 2  # both calls wait for a release; only the first is cancelled
    first = asyncio.create_task(model.complete_within(REQUEST, 30))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(model.complete_within(REQUEST, 30))
    await asyncio.sleep(0.05)
    first.cancel()  # a Ctrl-C, say: its generation under way stops at the next step
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(0.1)  # the second is under way now: never stopped by the first's stop
    llama.release.set()
    assert (await second).text == "answer 2"
    assert llama.stopped == 1


async def test_a_cancelled_call_still_queued_never_runs(
    held: tuple[LocalModel, HeldLlama],
) -> None:
    model, llama = held
    first = asyncio.create_task(model.complete_within(REQUEST, 30))
    queued = asyncio.create_task(model.complete_within(REQUEST, 30))
    await asyncio.sleep(0.05)

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    llama.release.set()
    await first
    await asyncio.to_thread(local_module._loaded[model.path][1].submit(lambda: None).result)

    assert llama.calls == 1


def test_loading_leaves_stdout_and_stderr_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # What the process's stdout is while llama.cpp reads the file: before the fix,
    # llama-cpp-python pointed fd 1 and 2 (and sys.stdout) at /dev/null for every thread.
    seen: list[tuple[str, object]] = []
    real_load = _internals.llama_cpp.llama_model_load_from_file

    def load(*args: Any) -> Any:
        seen.append((os.readlink("/proc/self/fd/1"), sys.stdout))
        return real_load(*args)

    monkeypatch.setattr(_internals.llama_cpp, "llama_model_load_from_file", load)
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    stdout_target = os.readlink("/proc/self/fd/1")

    with pytest.raises(ConfigError, match="Cannot load local model"):
        LocalModel(str(bogus))._load()

    assert seen == [(stdout_target, sys.stdout)]
    # llama.cpp's own complaints about the file are silenced; the ConfigError says it.
    assert "gguf" not in capfd.readouterr().err
    assert llama_cpp.llama  # the package's module, untouched
    assert _internals.suppress_stdout_stderr.__name__ == "suppress_stdout_stderr"


def test_a_stop_asked_before_its_generation_began_is_kept_for_it_alone() -> None:
    stopper = local_module._Stopper()
    first, second = local_module._Job(), local_module._Job()
    stopper.stop(first)  # its caller left while the thread was taking it up
    stopper.start(first)
    assert stopper.stopping
    stopper.end()
    stopper.start(second)
    assert not stopper.stopping
