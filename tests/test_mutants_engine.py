"""Engine behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
a consumer that raises at the end of a run that succeeded reaches the caller (only a run
that is already failing ignores it), the reviewer and the synthesiser read text as written
(not as ``\\u`` escapes), confidence is rounded to 3 places, and a task that never ran took
no time, no attempt and no revision; retries are numbered across a model fallback; synthesis
may take 300 s unless the orchestrator sets a timeout; concat shows JSON indented; a cycle of
fallback workers tries each once."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from foreman import Orchestrator
from foreman.errors import ModelError, RateLimitError
from foreman.events import Event, RunFinished, TaskRetried
from foreman.results import RunStatus, TaskResult, TaskStatus, confidences
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, is_review, is_synthesis, plan_of, task, worker

TEAM = Registry(
    [
        worker("researcher"),
        worker("writer"),
        worker("reviewer"),
        worker("picky", missing_inputs="skip"),
    ]
)
TWO = plan_of(task("t1"), task("t2", "writer", "t1"))


class Structured(BaseModel):
    a: int


class ConsumerError(Exception):
    pass


def orchestrator(model: ScriptedModel, store: MemoryStore, **kwargs) -> Orchestrator:
    kwargs.setdefault("assembly", "concat")
    return Orchestrator(TEAM, model=model, store=store, retry=NO_DELAY, **kwargs)


async def test_a_consumer_raising_at_the_end_of_a_succeeded_run_reaches_the_caller() -> None:
    seen: list[Event] = []

    def consumer(event: Event) -> None:
        seen.append(event)
        if isinstance(event, RunFinished):
            raise ConsumerError("display broke")

    store = MemoryStore()
    with pytest.raises(ConsumerError, match="display broke"):
        async with asyncio.timeout(10):
            await orchestrator(ScriptedModel(Script(TWO)), store).run("x", on_event=consumer)
    run_id = seen[-1].run_id
    assert (await store.get_run(run_id)).status is RunStatus.succeeded


async def test_the_reviewer_and_the_synthesiser_read_non_ascii_text_as_written() -> None:
    plan = plan_of(task("t1", instructions="résumé ☕"), task("t2"))
    model = ScriptedModel(Script(plan))
    orch = orchestrator(model, MemoryStore(), assembly="synthesis", validator="reviewer")
    async with asyncio.timeout(10):
        result = await orch.run("x", plan=plan)
    assert result.status is RunStatus.succeeded
    for kind in (is_review, is_synthesis):
        assert any("résumé ☕" in r.messages[0].content for r in model.requests if kind(r))


def test_confidence_is_rounded_to_three_places() -> None:
    plan = plan_of(task("t1"), task("t2"), task("t3"), task("t4", "writer", "t1", "t2", "t3"))
    results = {
        tid: TaskResult(task_id=tid, worker="w", status=TaskStatus.succeeded)
        for tid in ("t1", "t2", "t3", "t4")
    }
    results["t1"].approved = False  # 0.6: the quality gate still rejected it
    assert confidences(plan, results)["t4"] == 0.867  # (0.6 + 1 + 1) / 3


async def test_a_skipped_task_took_no_time_no_attempt_and_no_revision() -> None:
    plan = plan_of(task("t1"), task("t2", "picky", "t1"))
    model = ScriptedModel(Script(plan, tasks={"do t1": ModelError("down")}))
    async with asyncio.timeout(10):
        result = await orchestrator(model, MemoryStore()).run("x", plan=plan)
    assert result.tasks["t2"].status is TaskStatus.skipped
    skipped = result.tasks["t2"]
    assert (skipped.latency, skipped.revisions, skipped.attempts) == (0.0, 0, 0)


async def test_retries_are_numbered_across_a_model_fallback() -> None:
    team = Registry([worker("researcher", model="primary", fallback_model="backup")])
    primary = ScriptedModel([RateLimitError("429")] * 3, name="primary")
    backup = ScriptedModel([RateLimitError("429"), "done"], name="backup")
    orch = Orchestrator(
        team,
        model=ScriptedModel([], name="default"),
        models={"primary": primary, "backup": backup},
        store=MemoryStore(),
        assembly="concat",
    )
    events: list[Event] = []
    async with asyncio.timeout(10):
        result = await orch.run("x", plan=plan_of(task("t1")), on_event=events.append)
    assert result.tasks["t1"].attempts == 5
    # attempt 3 on the primary model is its last: no retry; the backup's first retry is the 4th
    assert [e.attempt for e in events if isinstance(e, TaskRetried)] == [1, 2, 4]


class Timed(ScriptedModel):
    """Records the time limit and token budget each call was given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits: list[tuple[bool, float]] = []
        self.budgets: list[tuple[bool, int | None]] = []

    async def complete_within(self, request, seconds: float):
        self.limits.append((is_synthesis(request), seconds))
        self.budgets.append((is_synthesis(request), request.max_tokens))
        return await super().complete_within(request, seconds)


async def test_synthesis_may_take_300s_without_an_orchestrator_timeout_and_1500_tokens() -> None:
    model = Timed(Script(TWO), name="m")
    model.default_call_timeout = 42.0
    orch = orchestrator(model, MemoryStore(), assembly="synthesis")
    async with asyncio.timeout(10):
        await orch.run("x", plan=TWO)
    assert sorted(set(model.limits)) == [(False, 42.0), (True, 300.0)]
    assert [budget for synthesis, budget in model.budgets if synthesis] == [1500]


async def test_concat_shows_a_structured_output_as_indented_json() -> None:
    model = ScriptedModel(Script(TWO, tasks={"do t1": '{"a": 1}'}))
    team = Registry([worker("researcher", output_schema=Structured), worker("writer")])
    orch = Orchestrator(team, model=model, store=MemoryStore(), assembly="concat")
    async with asyncio.timeout(10):
        result = await orch.run("x", plan=TWO)
    assert '{\n  "a": 1\n}' in result.answer


async def test_a_fallback_cycle_tries_each_worker_once() -> None:
    team = Registry(
        [
            worker("a", model="ma", fallback="b"),
            worker("b", model="mb", fallback="c"),
            worker("c", model="mc", fallback="b"),
        ]
    )
    down = {
        name: ScriptedModel([ModelError("400 down")] * 5, name=name) for name in ("ma", "mb", "mc")
    }
    orch = Orchestrator(
        team, model=ScriptedModel([], name="default"), models=down, store=MemoryStore(),
        assembly="concat",
    )  # fmt: skip
    async with asyncio.timeout(10):
        result = await orch.run("x", plan=plan_of(task("t1", "a")))
    assert result.tasks["t1"].status is TaskStatus.failed
    assert [len(down[name].requests) for name in ("ma", "mb", "mc")] == [1, 1, 1]
