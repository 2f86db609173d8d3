"""Assembly (synthesis, single, concat, fallback), the event stream, usage and confidence."""

from __future__ import annotations

import asyncio
import typing
from contextlib import aclosing

import pytest
from pydantic import BaseModel

from foreman import Orchestrator, RunResult, TaskResult, TaskStatus
from foreman.engine.prompts import SYNTHESIS_SYSTEM
from foreman.errors import ConfigError, ModelError, RateLimitError
from foreman.events import (
    EVENT_ADAPTER,
    Assembled,
    Event,
    PlanReady,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskStarted,
)
from foreman.models.base import Usage
from foreman.results import confidences
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import (
    Script,
    TrackingModel,
    collect,
    index_of,
    is_planner,
    is_review,
    is_synthesis,
    latency_by_instructions,
    of_type,
    payload,
    plan_json,
    plan_of,
    task,
    worker,
)

TEAM = Registry([worker("researcher"), worker("writer")])
DIAMOND = plan_of(task("t1"), task("t2"), task("t3", "writer", "t1", "t2"))


async def run(
    plan, script: Script, team: Registry = TEAM, **kwargs
) -> tuple[RunResult, list, TrackingModel]:
    model = TrackingModel(script)
    events: list = []
    result = await Orchestrator(team, model=model, **kwargs).run(
        "explain TLS", plan=plan, on_event=events.append
    )
    return result, events, model


def synthesis_requests(model: ScriptedModel) -> list:
    return [r for r in model.requests if is_synthesis(r)]


# --- assembly -----------------------------------------------------------------------------


async def test_synthesis_is_one_call_over_structured_results() -> None:
    result, events, model = await run(DIAMOND, Script(synthesis="  The answer.  "))

    [synthesis] = synthesis_requests(model)
    assert synthesis.system == SYNTHESIS_SYSTEM
    body = payload(synthesis)
    assert set(body) == {"request", "results"}
    assert body["request"] == "explain TLS"
    assert body["results"] == [
        {
            "id": "t1",
            "instructions": "do t1",
            "status": "succeeded",
            "confidence": 1.0,
            "output": "out:do t1",
        },
        {
            "id": "t2",
            "instructions": "do t2",
            "status": "succeeded",
            "confidence": 1.0,
            "output": "out:do t2",
        },
        {
            "id": "t3",
            "instructions": "do t3",
            "status": "succeeded",
            "confidence": 1.0,
            "output": "out:do t3",
        },
    ]
    assert result.answer == "The answer."
    [assembled] = of_type(events, Assembled)
    assert (assembled.method, assembled.answer) == ("synthesis", "The answer.")


async def test_synthesis_sees_failed_parts_with_zero_confidence() -> None:
    script = Script(tasks={"do t2": ModelError("t2 broke")}, synthesis="Partial answer.")

    result, _, model = await run(DIAMOND, script)

    results = {r["id"]: r for r in payload(synthesis_requests(model)[0])["results"]}
    assert results["t2"] == {
        "id": "t2",
        "instructions": "do t2",
        "status": "failed",
        "confidence": 0.0,
        "output": None,
    }
    assert results["t3"]["confidence"] == 0.45  # 0.9 (missing input) x mean(1.0, 0.0)
    assert result.answer is not None
    assert result.answer.startswith("Partial answer.")
    assert "Partial result" in result.answer


async def test_a_single_task_plan_skips_synthesis() -> None:
    result, events, model = await run(plan_of(task("t1")), Script(tasks={"do t1": "just this"}))

    assert synthesis_requests(model) == []
    assert result.answer == "just this"
    [assembled] = of_type(events, Assembled)
    assert assembled.method == "single"


async def test_concat_assembly_has_a_section_per_task_and_no_model_call() -> None:
    result, events, model = await run(DIAMOND, Script(), assembly="concat")

    assert synthesis_requests(model) == []
    answer = result.answer or ""
    for task_id, worker_name in [("t1", "researcher"), ("t2", "researcher"), ("t3", "writer")]:
        assert f"## {task_id} · {worker_name} (succeeded, confidence 1.00)\ndo {task_id}" in answer
        assert f"out:do {task_id}" in answer
    assert answer.index("## t1") < answer.index("## t2") < answer.index("## t3")
    assert "Partial result" not in answer
    assert of_type(events, Assembled)[0].method == "concat"


async def test_concat_shows_what_is_missing() -> None:
    script = Script(tasks={"do t1": ModelError("no sources")})

    result, _, _ = await run(DIAMOND, script, assembly="concat")

    answer = result.answer or ""
    assert "## t1 · researcher (failed, confidence 0.00)" in answer
    assert "_Not available: no sources_" in answer
    assert "Partial result: some parts could not be produced." in answer
    assert "Confidence per part: t1 0.00, t2 1.00, t3 0.45" in answer


async def test_the_partial_note_lists_problems_in_plan_order() -> None:
    # t1 fails last (it is slow), t2 fails first: the note still reads t1, then t2.
    plan = plan_of(task("t1"), task("t2"), task("t3"))
    script = Script(tasks={"do t1": ModelError("t1 broke"), "do t2": ModelError("t2 broke")})
    model = TrackingModel(script, latency=latency_by_instructions({"do t1": 0.05}))
    events: list = []

    result = await Orchestrator(TEAM, model=model).run("x", plan=plan, on_event=events.append)

    failed = [e.task_id for e in of_type(events, TaskFailed)]
    assert failed == ["t2", "t1"]
    answer = result.answer or ""
    assert answer.index("- t1 (researcher) failed: t1 broke") < answer.index(
        "- t2 (researcher) failed: t2 broke"
    )


async def test_a_failed_synthesis_falls_back_to_concat_with_a_note() -> None:
    script = Script(synthesis=ModelError("synthesiser offline"))

    result, events, model = await run(DIAMOND, script)

    assert len(synthesis_requests(model)) == 1  # a non-transient error is not retried
    answer = result.answer or ""
    for task_id in ("t1", "t2", "t3"):
        assert f"## {task_id} · " in answer
        assert f"out:do {task_id}" in answer
    assert "(Synthesis failed, so the parts are shown as they are: synthesiser offline)" in answer
    assert of_type(events, Assembled)[0].method == "concat"
    assert result.status == "succeeded"  # every task still succeeded


def test_unknown_assembly_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="assembly"):
        Orchestrator(TEAM, model=ScriptedModel([]), assembly="vote")  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        Orchestrator(TEAM, model=ScriptedModel([]), concurrency=concurrency)


# --- the event stream ---------------------------------------------------------------------


async def test_stream_yields_events_in_order_ending_with_run_finished() -> None:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script(DIAMOND), latency=0.001))

    events = await collect(orchestrator.stream("explain TLS"))

    assert isinstance(events[0], RunStarted)
    assert events[0].request == "explain TLS"
    assert isinstance(events[1], PlanReady)
    assert events[1].plan == DIAMOND
    assert isinstance(events[-2], Assembled)
    assert isinstance(events[-1], RunFinished)
    assert len(of_type(events, RunFinished)) == 1
    for task_id in ("t1", "t2", "t3"):
        assert index_of(events, TaskStarted, task_id) < index_of(events, TaskFinished, task_id)
    assert max(index_of(events, TaskFinished, t) for t in ("t1", "t2")) < index_of(
        events, TaskStarted, "t3"
    )
    assert len({e.run_id for e in events}) == 1
    assert events[-1].result.run_id == events[0].run_id
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps)
    final = events[-1].result
    assert final.answer == events[-2].answer == "FINAL"
    assert set(final.tasks) == {"t1", "t2", "t3"}


async def test_run_and_stream_give_the_same_events() -> None:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script(DIAMOND)), concurrency=1)
    heard: list = []

    await orchestrator.run("x", on_event=heard.append)
    streamed = await collect(orchestrator.stream("x"))

    def shape(events: list) -> list:
        return [(e.type, getattr(e, "task_id", None)) for e in events]

    assert shape(heard) == shape(streamed)


async def test_leaving_the_stream_early_cancels_the_run() -> None:
    model = TrackingModel(Script(), latency=30.0)
    orchestrator = Orchestrator(TEAM, model=model)
    seen: list = []

    async with asyncio.timeout(5):
        async with aclosing(orchestrator.stream("x", plan=DIAMOND)) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, TaskStarted):
                    break
        await asyncio.sleep(0)

    assert model.in_flight == 0  # both slow calls were cancelled, not left running
    assert len(model.requests) == 2
    assert not of_type(seen, RunFinished)


ALL_EVENT_TYPES = {
    member.model_fields["type"].default for member in typing.get_args(typing.get_args(Event)[0])
}


class Summary(BaseModel):
    points: list[str]


async def test_every_event_round_trips_through_json() -> None:
    team = Registry(
        [
            worker("researcher"),
            worker("writer"),
            worker("flaky", fallback="writer"),
            worker("picky", missing_inputs="skip"),
            worker("structured", output_schema=Summary),
            worker("reviewer"),
            worker("deployer", risk="medium"),
        ]
    )
    plan = plan_of(
        task("t1"),
        task("t2", "flaky"),
        task("t3"),
        task("t4", "picky", "t3"),
        task("t5", "structured", "t1", "t2"),
        task("t6", "deployer"),
    )
    flaky_prompt = team.get("flaky").system_prompt
    script = Script(
        [plan_json(plan_of(task("t1", "researcher", "t1"))), plan],
        tasks={
            "do t1": [RateLimitError("429"), "facts"],
            "do t2": lambda r: ModelError("flaky down") if r.system == flaky_prompt else "saved",
            "do t3": ModelError("t3 down"),
            "do t5": '{"points": ["a", "b"]}',
        },
        review=[RateLimitError("429"), '{"approved": true, "reasons": ["fine"]}'],
    )
    orchestrator = Orchestrator(
        team, model=ScriptedModel(script), validator="reviewer", approve=lambda approval: True
    )

    events = await collect(orchestrator.stream("everything"))

    # budget_exceeded ends a run early: tests/test_budgets.py round-trips it;
    # task_expanded needs a for-each plan: tests/test_for_each.py round-trips it;
    # context_compacted needs a context budget: tests/test_context.py round-trips it;
    # plan_revised and replan_stalled need replanning: tests/test_replan*.py do;
    # orchestrator_turn a delegating run: tests/test_delegating.py;
    # nested needs a team as a worker: tests/test_nested.py round-trips it;
    # tool_called and tool_finished need a worker with tools: tests/test_tools_loop.py
    unseen = {"budget_exceeded", "task_expanded", "context_compacted", "nested"}
    unseen |= {"plan_revised", "replan_stalled", "orchestrator_turn"}
    unseen |= {"tool_called", "tool_finished"}
    unseen |= {"task_routed"}  # needs a router: tests/test_routing.py round-trips it
    assert {e.type for e in events} == ALL_EVENT_TYPES - unseen
    for event in events:
        again = EVENT_ADAPTER.validate_json(event.model_dump_json())
        assert type(again) is type(event)
        assert again == event
    final = events[-1].result
    assert final.tasks["t5"].output == {"points": ["a", "b"]}
    assert isinstance(EVENT_ADAPTER.validate_json(events[-1].model_dump_json()).result, RunResult)


# --- usage and confidence -----------------------------------------------------------------


def total(usages: typing.Iterable[Usage]) -> Usage:
    return sum(usages, Usage())


async def test_usage_totals_add_up() -> None:
    script = Script(
        [plan_json(plan_of(task("t1", "poet"))), DIAMOND],
        tasks={"do t2": [RateLimitError("429"), "t2 answer"]},
        review=['{"approved": false, "reasons": ["more"]}', '{"approved": true}'],
        synthesis="final words here",
    )
    team = Registry([*TEAM, worker("reviewer")])
    model = TrackingModel(script)
    events: list = []

    result = await Orchestrator(team, model=model, validator="reviewer").run(
        "explain TLS", on_event=events.append
    )

    responses = model.responses
    planner = total(r.usage for q, r in responses if is_planner(q))
    synthesis = total(r.usage for q, r in responses if is_synthesis(q))
    tasks = total(r.usage for q, r in responses if not (is_planner(q) or is_synthesis(q)))
    assert planner.output_tokens > 0 and synthesis.output_tokens == 3
    assert of_type(events, PlanReady)[0].usage == planner
    assert total(t.usage for t in result.tasks.values()) == tasks
    assert result.usage == planner + tasks + synthesis
    assert result.usage == total(r.usage for _, r in responses)
    assert any(is_review(q) for q, _ in responses)
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens


async def test_a_given_plan_costs_no_planning() -> None:
    result, events, model = await run(DIAMOND, Script())

    assert of_type(events, PlanReady)[0].usage == Usage()
    assert not any(is_planner(r) for r in model.requests)
    assert result.usage == total(r.usage for _, r in model.responses)


def result_of(task_id: str, status: str = "succeeded", **fields: object) -> TaskResult:
    return TaskResult(task_id=task_id, worker="researcher", status=TaskStatus(status), **fields)


def test_confidence_flows_downstream() -> None:
    plan = plan_of(
        task("t1"),
        task("t2"),
        task("t3", "writer", "t1", "t2"),
        task("t4", "writer", "t3"),
        task("t5"),
        task("t6", "writer", "t5"),
        task("t7", "writer", "t6"),
    )
    results = {
        "t1": result_of("t1"),
        "t2": result_of("t2", "failed", error="x"),
        "t3": result_of("t3", missing_inputs=["t2"]),
        "t4": result_of("t4", approved=True),
        "t5": result_of("t5", approved=False),
        "t6": result_of("t6", "skipped", missing_inputs=["t5"]),
        # t7 has no result at all (the run stopped before it)
    }

    assert confidences(plan, results) == {
        "t1": 1.0,
        "t2": 0.0,
        "t3": 0.45,  # 0.9 for the missing input, times the mean of 1.0 and 0.0
        "t4": 0.45,  # approved, but only as good as its input
        "t5": 0.6,  # the quality gate still rejected it
        "t6": 0.0,
        "t7": 0.0,
    }


async def test_run_result_confidence_matches_the_results() -> None:
    script = Script(tasks={"do t2": ModelError("broken")})

    result, _, _ = await run(DIAMOND, script)

    assert result.confidence == confidences(result.plan, result.tasks)
    assert result.confidence == {"t1": 1.0, "t2": 0.0, "t3": 0.45}
    assert result.status == "partial"


async def test_a_fully_successful_run_is_not_partial() -> None:
    result, _, _ = await run(DIAMOND, Script())

    assert result.status == "succeeded"
    assert not result.partial
    assert result.error is None
    assert result.confidence == {"t1": 1.0, "t2": 1.0, "t3": 1.0}
    assert result.elapsed > 0


def test_run_sync_works_without_a_loop() -> None:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script()))

    result = orchestrator.run_sync("x", plan=DIAMOND)

    assert result.answer == "FINAL"


async def test_no_synthesis_call_when_no_task_succeeded() -> None:

    calls: list[str] = []

    def answer(request):
        calls.append(request.system or "")
        if request.output_schema and "tasks" in request.output_schema.get("properties", {}):
            return plan_json(plan_of(task("t1", "researcher")))
        return ModelError("400 bad request")

    orchestrator = Orchestrator(model=ScriptedModel(answer))
    result = await orchestrator.run("x")

    assert result.status.value == "partial"
    assert len(calls) == 2  # the plan and the one failed worker call, no synthesis
    assert "Partial result" in (result.answer or "")
    assert "t1 (researcher) failed" in (result.answer or "")


def test_run_sync_runs_and_closes_models_and_store() -> None:
    closed: list[str] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append("model")

    from foreman.store import MemoryStore

    class ClosingStore(MemoryStore):
        async def aclose(self) -> None:
            closed.append("store")

    orchestrator = Orchestrator(
        TEAM, model=Closing(Script(DIAMOND)), store=ClosingStore(), assembly="concat"
    )
    result = orchestrator.run_sync("x")

    assert result.status.value == "succeeded" and set(result.tasks) == {"t1", "t2", "t3"}
    assert closed == ["model", "store"]
