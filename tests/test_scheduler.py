"""Event-driven DAG scheduling: start on last dependency, concurrency limits, resumption.

Latencies here only create an order of events; assertions are on that order (or on counts
of calls in flight), never on how long anything took.
"""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator, TaskResult, TaskStatus
from foreman.engine.scheduler import run_dag
from foreman.events import TaskFinished, TaskStarted
from foreman.plan import Task
from foreman.workers import Registry
from helpers import (
    Script,
    TrackingModel,
    collect,
    index_of,
    latency_by_instructions,
    of_type,
    plan_of,
    task,
    worker,
)

TEAM = Registry([worker("researcher"), worker("writer")])


def orchestrator(model: TrackingModel, **kwargs: object) -> Orchestrator:
    return Orchestrator(TEAM, model=model, **kwargs)  # type: ignore[arg-type]


async def test_a_task_starts_as_soon_as_its_own_dependency_finishes() -> None:
    # t1 fast, t2 slow; t3 needs only t1, t4 needs t2 and t3. A level-based scheduler
    # would hold t3 back until t2 (same level as t1) finished.
    plan = plan_of(
        task("t1"),
        task("t2"),
        task("t3", "writer", "t1"),
        task("t4", "writer", "t2", "t3"),
    )
    model = TrackingModel(
        Script(),
        latency=latency_by_instructions({"do t1": 0.01, "do t2": 0.3, "do t3": 0.01}),
    )

    events = await collect(orchestrator(model).stream("x", plan=plan))

    assert index_of(events, TaskStarted, "t3") < index_of(events, TaskFinished, "t2")
    t3_started = events[index_of(events, TaskStarted, "t3")]
    t2_finished = events[index_of(events, TaskFinished, "t2")]
    assert t3_started.at <= t2_finished.at
    # ...and nothing starts before all of its inputs exist.
    assert index_of(events, TaskFinished, "t1") < index_of(events, TaskStarted, "t3")
    assert index_of(events, TaskFinished, "t2") < index_of(events, TaskStarted, "t4")
    assert index_of(events, TaskFinished, "t3") < index_of(events, TaskStarted, "t4")
    assert events[-1].result.status == "succeeded"


async def test_independent_tasks_all_run_at_once_without_a_limit() -> None:
    plan = plan_of(*(task(f"t{i}") for i in range(1, 6)), task("t6", "writer", "t1", "t5"))
    model = TrackingModel(Script(), latency=0.02)

    events = await collect(orchestrator(model, concurrency=None).stream("x", plan=plan))

    assert model.max_in_flight == 5
    first_finish = min(index_of(events, TaskFinished, f"t{i}") for i in range(1, 6))
    assert all(index_of(events, TaskStarted, f"t{i}") < first_finish for i in range(1, 6))


async def test_the_global_concurrency_limit_holds() -> None:
    plan = plan_of(*(task(f"t{i}") for i in range(1, 7)))
    model = TrackingModel(Script(), latency=0.01)

    result = await orchestrator(model, concurrency=2).run("x", plan=plan)

    assert model.max_in_flight == 2
    assert result.status == "succeeded"
    assert len(result.tasks) == 6


async def test_a_limit_of_one_runs_tasks_one_by_one() -> None:
    plan = plan_of(*(task(f"t{i}") for i in range(1, 4)))
    model = TrackingModel(Script(), latency=0.01)
    events: list = []

    await orchestrator(model, concurrency=1).run("x", plan=plan, on_event=events.append)

    assert model.max_in_flight == 1
    task_events = [(e.type, e.task_id) for e in events if isinstance(e, TaskStarted | TaskFinished)]
    assert task_events == [
        ("task_started", "t1"),
        ("task_finished", "t1"),
        ("task_started", "t2"),
        ("task_finished", "t2"),
        ("task_started", "t3"),
        ("task_finished", "t3"),
    ]


async def test_a_worker_max_concurrency_holds_while_others_run() -> None:
    team = Registry([worker("researcher"), worker("slow", max_concurrency=1)])
    plan = plan_of(
        task("t1", "slow"), task("t2", "slow"), task("t3", "slow"), task("t4"), task("t5")
    )
    model = TrackingModel(Script(), latency=0.01)

    result = await Orchestrator(team, model=model, concurrency=None).run("x", plan=plan)

    slow_prompt = team.get("slow").system_prompt
    researcher_prompt = team.get("researcher").system_prompt
    assert model.max_by_worker[slow_prompt] == 1
    assert model.max_by_worker[researcher_prompt] == 2
    assert model.max_in_flight == 3
    assert result.status == "succeeded"


async def test_a_task_waiting_for_its_worker_does_not_hold_a_global_slot() -> None:
    # Two slots; the 'slow' worker allows one task at a time. t2 (slow) must wait for t1,
    # but t3 (another worker) has a free slot and should not wait behind t2.
    team = Registry([worker("researcher"), worker("slow", max_concurrency=1)])
    plan = plan_of(task("t1", "slow"), task("t2", "slow"), task("t3"))
    model = TrackingModel(
        Script(), latency=latency_by_instructions({"do t1": 0.2, "do t2": 0.01, "do t3": 0.01})
    )
    events: list = []

    await Orchestrator(team, model=model, concurrency=2).run("x", plan=plan, on_event=events.append)

    assert index_of(events, TaskStarted, "t3") < index_of(events, TaskFinished, "t1")
    assert index_of(events, TaskFinished, "t1") < index_of(events, TaskStarted, "t2")
    assert model.max_in_flight == 2


# --- run_dag directly ---------------------------------------------------------------------


def done(task_id: str, output: str) -> TaskResult:
    return TaskResult(
        task_id=task_id, worker="researcher", status=TaskStatus.succeeded, output=output
    )


async def test_completed_results_are_not_executed_again() -> None:
    plan = plan_of(task("t1"), task("t2"), task("t3", "writer", "t1", "t2"))
    executed: list[str] = []
    seen_inputs: dict[str, dict[str, TaskResult]] = {}

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        executed.append(t.id)
        seen_inputs[t.id] = inputs
        return done(t.id, f"new {t.id}")

    earlier = done("t1", "from before")
    results = await run_dag(plan, execute, results={"t1": earlier})

    assert sorted(executed) == ["t2", "t3"]
    assert results["t1"] is earlier
    assert seen_inputs["t3"]["t1"].output == "from before"
    assert seen_inputs["t3"]["t2"].output == "new t2"
    assert set(results) == {"t1", "t2", "t3"}


async def test_a_fully_completed_plan_runs_nothing() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"))

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        raise AssertionError(f"{t.id} ran again")

    results = {"t1": done("t1", "a"), "t2": done("t2", "b")}

    assert await run_dag(plan, execute, results=dict(results)) == results


async def test_results_fill_in_place_and_an_error_cancels_running_tasks() -> None:
    plan = plan_of(task("t1"), task("t2"), task("t3", "writer", "t1"))
    cancelled: list[str] = []
    results: dict[str, TaskResult] = {}

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        if t.id == "t1":
            return done("t1", "ok")
        if t.id == "t2":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(t.id)
                raise
        raise RuntimeError(f"{t.id} broke")

    with pytest.raises(RuntimeError, match="t3 broke"):
        async with asyncio.timeout(5):
            await run_dag(plan, execute, results=results)

    assert cancelled == ["t2"]
    assert set(results) == {"t1"}  # what finished is kept


async def test_dependants_receive_exactly_their_dependencies() -> None:
    plan = plan_of(task("t1"), task("t2"), task("t3", "writer", "t2"))
    seen: dict[str, set[str]] = {}

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        seen[t.id] = set(inputs)
        return done(t.id, t.id)

    await run_dag(plan, execute)

    assert seen == {"t1": set(), "t2": set(), "t3": {"t2"}}


async def test_events_of_a_run_show_every_task_once() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t1"))
    model = TrackingModel(Script(), latency=0.001)

    events = await collect(orchestrator(model).stream("x", plan=plan))

    assert sorted(e.task_id for e in of_type(events, TaskStarted)) == ["t1", "t2", "t3"]
    assert sorted(e.task_id for e in of_type(events, TaskFinished)) == ["t1", "t2", "t3"]
