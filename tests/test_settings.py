"""Run settings: one typed record, recorded with every run, read back by resume, and the
CLI's defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from foreman import Budget, Orchestrator
from foreman.engine.settings import DEFAULTS, RunSettings
from foreman.errors import ConfigError
from foreman.testing import ScriptedModel
from foreman.workers.registry import Registry
from helpers import worker

TEAM = Registry([worker("researcher"), worker("fact_checker")])


def test_an_old_record_missing_keys_or_with_unknown_ones_still_reads() -> None:
    settings = RunSettings.model_validate({"model": "m", "from_the_future": 1})
    assert settings.model == "m"
    assert settings.concurrency == DEFAULTS.concurrency == 8
    assert "from_the_future" not in settings.recorded()


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULTS.max_tasks = 3  # type: ignore[misc]


def test_from_settings_rebuilds_the_same_orchestrator() -> None:
    model = ScriptedModel([])
    first = Orchestrator(
        TEAM,
        model=model,
        concurrency=3,
        max_tasks=5,
        max_revisions=2,
        assembly="concat",
        auto_approve="medium",
        timeout=7.5,
        record_prompts=False,
        budget=Budget(max_calls=4),
    )
    again = Orchestrator.from_settings(
        RunSettings.model_validate(first.settings), TEAM, models={model.name: model}
    )
    assert again.settings == first.settings
    deps = again.deps()
    assert (deps.settings.concurrency, deps.budget) == (3, Budget(max_calls=4))
    assert deps.own_timeout(60) == 7.5


def test_the_team_file_is_a_setting_only_the_cli_sets() -> None:
    settings = RunSettings(team="/teams/x.yaml", model="scripted")
    model = ScriptedModel([])
    built = Orchestrator.from_settings(settings, TEAM, models={"scripted": model})
    assert built.settings["team"] == "/teams/x.yaml"
    assert Orchestrator(TEAM, model=model).settings["team"] is None


@pytest.mark.parametrize("seconds", [0, -1.5, float("nan")])
def test_a_call_timeout_that_is_no_positive_number_is_refused(seconds: float) -> None:
    with pytest.raises(ConfigError, match="timeout must be a positive number of seconds"):
        Orchestrator(workers=TEAM, model=ScriptedModel([]), timeout=seconds)


def test_a_call_timeout_without_end_is_accepted() -> None:
    assert Orchestrator(workers=TEAM, model=ScriptedModel([]), timeout=float("inf")).timeout
