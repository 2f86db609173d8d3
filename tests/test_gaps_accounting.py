"""Tokens are spent whether or not an attempt succeeds: every answered attempt is counted.

Answers that failed to parse, attempts on a model that was then abandoned for its fallback
model, and a worker abandoned for its fallback worker all cost money; the task's usage and
the run's usage (returned and stored) must include them. Each scripted answer carries an
exact, distinct usage so a dropped or double-counted attempt changes the totals.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from foreman import Orchestrator
from foreman.models.base import ModelResponse, Usage
from foreman.results import RunResult, RunStatus, TaskStatus
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import plan_of, task, worker

BAD = Usage(input_tokens=100, output_tokens=10)  # an answer that does not parse
GOOD = Usage(input_tokens=7, output_tokens=3)


class Out(BaseModel):
    value: int


def answers(name: str, *entries: tuple[str, Usage]) -> ScriptedModel:
    return ScriptedModel(
        [ModelResponse(text=text, model=name, usage=usage) for text, usage in entries], name=name
    )


def unparsable(name: str, times: int = 3) -> ScriptedModel:
    return answers(name, *[("not json at all", BAD)] * times)


async def run_one(team: Registry, models: dict[str, ScriptedModel]) -> tuple[RunResult, Usage]:
    """Run a one-task plan (no planner, no synthesis call); the result and the stored usage."""
    store = MemoryStore()
    orchestrator = Orchestrator(
        team,
        model=ScriptedModel([], name="default"),
        models=models,
        store=store,
        assembly="concat",
    )
    async with asyncio.timeout(10):
        result = await orchestrator.run("x", plan=plan_of(task("t1", "researcher")))
    stored = await store.get_run(result.run_id)
    tasks = await store.load_tasks(result.run_id)
    assert tasks["t1"].usage == result.tasks["t1"].usage
    return result, stored.usage


async def test_answers_that_failed_to_parse_are_counted() -> None:
    team = Registry([worker("researcher", model="m", output_schema=Out)])
    model = answers("m", ("nope", BAD), ("{broken", BAD), ('{"value": 1}', GOOD))

    result, stored = await run_one(team, {"m": model})

    t1 = result.tasks["t1"]
    assert t1.status is TaskStatus.succeeded and t1.attempts == 3
    expected = Usage(input_tokens=207, output_tokens=23)
    assert t1.usage == expected
    assert result.usage == expected
    assert stored == expected


async def test_attempts_on_the_abandoned_model_count_after_a_model_fallback() -> None:
    team = Registry(
        [worker("researcher", model="primary", fallback_model="backup", output_schema=Out)]
    )
    primary = unparsable("primary")
    backup = answers("backup", ('{"value": 2}', GOOD))

    result, stored = await run_one(team, {"primary": primary, "backup": backup})

    t1 = result.tasks["t1"]
    assert t1.status is TaskStatus.succeeded and t1.model == "backup"
    assert t1.attempts == 4
    expected = Usage(input_tokens=307, output_tokens=33)
    assert t1.usage == expected
    assert result.usage == expected
    assert stored == expected


async def test_attempts_of_the_abandoned_worker_count_after_a_worker_fallback() -> None:
    team = Registry(
        [
            worker("researcher", model="primary", fallback="writer", output_schema=Out),
            worker("writer", model="backup"),
        ]
    )
    primary = unparsable("primary")
    backup = answers("backup", ("rescued", GOOD))

    result, stored = await run_one(team, {"primary": primary, "backup": backup})

    t1 = result.tasks["t1"]
    assert t1.status is TaskStatus.succeeded and t1.output == "rescued"
    assert t1.attempts == 4
    expected = Usage(input_tokens=307, output_tokens=33)
    assert t1.usage == expected
    assert result.usage == expected
    assert stored == expected


async def test_both_models_of_both_workers_are_counted_when_everything_fails() -> None:
    team = Registry(
        [
            worker(
                "researcher",
                model="a",
                fallback_model="b",
                fallback="writer",
                output_schema=Out,
            ),
            worker("writer", model="c", fallback_model="d", output_schema=Out),
        ]
    )
    models = {name: unparsable(name) for name in "abcd"}

    result, stored = await run_one(team, models)

    t1 = result.tasks["t1"]
    assert t1.status is TaskStatus.failed
    assert t1.attempts == 12
    expected = Usage(input_tokens=1200, output_tokens=120)  # 4 models x 3 answers
    assert t1.usage == expected
    assert result.status is RunStatus.partial
    assert result.usage == expected
    assert stored == expected


async def test_a_failed_aborting_task_still_counts_its_tokens() -> None:
    team = Registry([worker("researcher", model="m", output_schema=Out, on_failure="abort")])

    result, stored = await run_one(team, {"m": unparsable("m")})

    assert result.status is RunStatus.aborted
    expected = Usage(input_tokens=300, output_tokens=30)
    assert result.tasks["t1"].usage == expected
    assert result.usage == expected
    assert stored == expected
