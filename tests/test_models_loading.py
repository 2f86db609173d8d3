"""Building a model imports its provider SDK (about a second); that must happen at
construction, in a worker thread when async code asks, never at the first call."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import foreman.models
from foreman.errors import ConfigError
from foreman.models import aload_model
from foreman.models.pool import ModelPool
from foreman.testing import ScriptedModel

TESTS = Path(__file__).parent


FIRST_CALL = """
import asyncio, sys
from fake_provider import FakeProvider, anthropic_message, openai_completion
from foreman.models.anthropic import AnthropicModel
from foreman.models.base import Message, ModelRequest
from foreman.models.openai import OpenAIModel

def sdk_modules():
    return {name for name in sys.modules if name.split(".")[0] in ("anthropic", "openai")}

async def main():
    with FakeProvider() as fake:
        models = [
            AnthropicModel("claude-test", api_key="k", base_url=fake.url),
            OpenAIModel("gpt-test", api_key="k", base_url=fake.url + "/v1"),
        ]
        fake.reply(anthropic_message("a"))
        fake.reply(openai_completion("b"))
        before = sdk_modules()
        for model in models:
            await model.complete(ModelRequest(messages=[Message(role="user", content="hi")]))
            await model.aclose()
    print(sorted(sdk_modules() - before))

asyncio.run(main())
"""


def test_the_first_call_imports_nothing_from_the_sdk() -> None:
    # A fresh process: in this one, earlier tests may have imported everything already.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    ran = subprocess.run(
        [sys.executable, "-c", FIRST_CALL],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


async def test_aload_model_builds_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    built_on: list[threading.Thread] = []

    def load_model(name: str | None = None) -> ScriptedModel:
        built_on.append(threading.current_thread())
        return ScriptedModel(["x"], name=name or "default")

    monkeypatch.setattr(foreman.models, "load_model", load_model)

    model = await aload_model("openai:any")

    assert model.name == "openai:any"
    assert built_on and built_on[0] is not threading.main_thread()


async def test_the_pool_builds_new_models_off_the_loop_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[tuple[str | None, bool]] = []

    def load_model(name: str | None = None) -> ScriptedModel:
        built.append((name, threading.current_thread() is threading.main_thread()))
        return ScriptedModel(["x"], name=name or "default")

    monkeypatch.setattr(foreman.models, "load_model", load_model)
    pool = ModelPool("openai:a")

    for name in ["openai:a", None, "openai:b", "openai:b"]:
        await pool.aget(name)

    assert built == [("openai:a", False), ("openai:b", False)]
    assert pool.get("openai:b") is await pool.aget("openai:b")
    assert pool.default.name == "openai:a"


async def test_building_an_unknown_model_off_the_loop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown model 'mystery'"):
        await ModelPool("local").aget("mystery")
