"""The planner: constrained request, retries that show the model its own errors, PlanError."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from foreman import Orchestrator
from foreman.errors import OutputValidationError, PlanError, RateLimitError
from foreman.events import PlanReady, PlanRejected, RunFinished, TaskStarted
from foreman.plan import Plan, Planner, constrained_plan_schema
from foreman.plan.prompts import planner_system_prompt
from foreman.plan.validate import validate_plan
from foreman.testing import ScriptedModel
from foreman.workers import Registry, RetryPolicy
from helpers import Script, collect, of_type, plan_json, plan_of, task, worker

GOOD = plan_of(task("t1"), task("t2", "writer", "t1"))
CYCLIC = plan_of(task("t1", "researcher", "t2"), task("t2", "writer", "t1"))
UNKNOWN = plan_of(task("t1", "poet"))
TRUNCATED = '{"tasks": [{"id": "t1", "worker": "researcher", "instructions": "find'


def planner(model: ScriptedModel, **kwargs: object) -> Planner:
    kwargs.setdefault("retry", RetryPolicy(initial_delay=0))
    return Planner(model, Registry.default(), **kwargs)  # type: ignore[arg-type]


async def test_first_valid_plan_is_returned_with_its_usage() -> None:
    model = ScriptedModel([plan_json(GOOD)])

    outcome = await planner(model).plan("write about TLS")

    assert outcome.plan == GOOD
    assert outcome.rejected == []
    assert len(model.requests) == 1
    assert outcome.usage.input_tokens > 0
    assert outcome.usage.output_tokens == len(plan_json(GOOD).split())


async def test_the_request_carries_the_order_constrained_schema() -> None:
    model = ScriptedModel([plan_json(GOOD)])

    await planner(model, max_tasks=5).plan("write about TLS")

    [request] = model.requests
    assert request.output_schema == constrained_plan_schema(Registry.default().names(), 5)
    assert request.temperature == 0.0
    assert request.messages[0].content == "write about TLS"
    for name in Registry.default().names():
        assert name in (request.system or "")  # the team is described to the planner


async def test_a_team_with_args_gets_a_schema_that_admits_args() -> None:
    class Query(BaseModel):
        q: str

    registry = Registry([worker("search", input_schema=Query)])
    plan = plan_of(task("t1", "search", args={"q": "tls"}))
    model = ScriptedModel([plan_json(plan)])

    outcome = await Planner(model, registry).plan("find tls")

    item = model.requests[0].output_schema["properties"]["tasks"]["prefixItems"][0]  # type: ignore[index]
    assert item["properties"]["args"] == {"type": "object"}
    assert outcome.plan.tasks[0].args == {"q": "tls"}


async def test_retry_shows_the_model_its_exact_errors_and_succeeds() -> None:
    model = ScriptedModel([plan_json(CYCLIC), plan_json(GOOD)])
    heard: list[tuple[int, list[str]]] = []

    outcome = await planner(model).plan("x", on_rejected=lambda a, e: heard.append((a, e)))

    assert outcome.plan == GOOD
    assert outcome.rejected == [["The dependencies form a cycle: t1 -> t2 -> t1."]]
    assert heard == [(1, ["The dependencies form a cycle: t1 -> t2 -> t1."])]
    assert len(model.requests) == 2
    retry = model.requests[1]
    assert [m.role for m in retry.messages] == ["user", "assistant", "user"]
    assert retry.messages[0].content == "x"
    assert retry.messages[1].content == plan_json(CYCLIC)  # its own bad plan
    assert "The dependencies form a cycle: t1 -> t2 -> t1." in retry.messages[2].content
    assert retry.output_schema == model.requests[0].output_schema


async def test_usage_of_every_attempt_is_counted() -> None:
    model = ScriptedModel([plan_json(CYCLIC), plan_json(GOOD)])

    outcome = await planner(model).plan("x")

    answered = len(plan_json(CYCLIC).split()) + len(plan_json(GOOD).split())
    assert outcome.usage.output_tokens == answered


async def test_gives_up_after_max_retries_plus_one_attempts() -> None:
    model = ScriptedModel([plan_json(UNKNOWN)] * 10)

    with pytest.raises(PlanError) as caught:
        await planner(model, max_retries=2).plan("x")

    assert len(model.requests) == 3
    text = str(caught.value)
    assert "3 attempts" in text
    assert "unknown worker 'poet'" in text
    assert plan_json(UNKNOWN) in text  # the last bad plan is shown
    assert caught.value.raw == plan_json(UNKNOWN)
    assert any("unknown worker 'poet'" in e for e in caught.value.errors)


async def test_zero_retries_means_one_attempt() -> None:
    model = ScriptedModel([plan_json(UNKNOWN)] * 10)

    with pytest.raises(PlanError):
        await planner(model, max_retries=0).plan("x")

    assert len(model.requests) == 1


@pytest.mark.parametrize("garbage", ["I would research first.", TRUNCATED])
async def test_garbage_is_retried_with_the_parse_error(garbage: str) -> None:
    model = ScriptedModel([garbage, plan_json(GOOD)])

    outcome = await planner(model).plan("x")

    assert outcome.plan == GOOD
    retry = model.requests[1]
    assert retry.messages[1].content == garbage
    assert "no JSON object" in retry.messages[2].content


@pytest.mark.parametrize("garbage", ["I would research first.", TRUNCATED])
async def test_garbage_every_time_raises_plan_error(garbage: str) -> None:
    model = ScriptedModel([garbage] * 3)

    with pytest.raises(PlanError) as caught:
        await planner(model, max_retries=2).plan("x")

    assert len(model.requests) == 3
    assert "no JSON object" in str(caught.value)
    assert garbage in str(caught.value)


async def test_an_output_validation_error_from_the_provider_is_retried() -> None:
    model = ScriptedModel([OutputValidationError("tool input was not JSON"), plan_json(GOOD)])
    heard: list[list[str]] = []

    outcome = await planner(model).plan("x", on_rejected=lambda _, e: heard.append(e))

    assert outcome.plan == GOOD
    assert heard == []  # retried as a transient call failure, not shown to the model
    assert model.requests[1] == model.requests[0]


async def test_persistent_output_validation_errors_become_a_rejection_shown_to_the_model() -> None:
    bad = OutputValidationError("tool input was not JSON")
    model = ScriptedModel([bad, bad, bad, plan_json(GOOD)])
    heard: list[list[str]] = []

    outcome = await planner(model).plan("x", on_rejected=lambda _, e: heard.append(e))

    assert outcome.plan == GOOD
    assert heard == [["tool input was not JSON"]]
    assert model.requests[3].messages[1].content == "(no answer)"
    assert "tool input was not JSON" in model.requests[3].messages[2].content


async def test_rate_limits_during_planning_are_retried_then_raised() -> None:
    limited = RateLimitError("429 slow down")
    model = ScriptedModel([limited, plan_json(GOOD)])
    assert (await planner(model).plan("x")).plan == GOOD

    always = ScriptedModel([limited, limited, limited])
    with pytest.raises(RateLimitError, match="slow down"):
        await planner(always).plan("x")
    assert len(always.requests) == 3


async def test_orchestrator_stream_emits_plan_rejected_then_runs() -> None:
    script = Script([plan_json(CYCLIC), plan_json(UNKNOWN), GOOD])
    orchestrator = Orchestrator(model=ScriptedModel(script), max_plan_retries=2)

    events = await collect(orchestrator.stream("x"))

    rejected = of_type(events, PlanRejected)
    assert [e.attempt for e in rejected] == [1, 2]
    assert rejected[0].errors == ["The dependencies form a cycle: t1 -> t2 -> t1."]
    assert "unknown worker 'poet'" in rejected[1].errors[0]
    kinds = [e.type for e in events]
    assert kinds.index("plan_rejected") < kinds.index("plan_ready") < kinds.index("task_started")
    assert of_type(events, PlanReady)[0].plan == GOOD
    assert isinstance(events[-1], RunFinished)
    assert events[-1].result.status == "succeeded"


async def test_orchestrator_stream_raises_plan_error_after_the_rejections() -> None:
    orchestrator = Orchestrator(
        model=ScriptedModel(Script([plan_json(UNKNOWN)] * 5)), max_plan_retries=1
    )
    events = []

    with pytest.raises(PlanError):
        async for event in orchestrator.stream("x"):
            events.append(event)

    types = [e.type for e in events]
    assert types == ["run_started", "plan_rejected", "plan_rejected", "run_finished"]
    assert events[-1].result.status == "failed" and not of_type(events, TaskStarted)


async def test_orchestrator_plan_uses_the_planner_model() -> None:
    planner_model = ScriptedModel([plan_json(GOOD)], name="planner")
    default = ScriptedModel([], name="default")  # would fail if called
    orchestrator = Orchestrator(model=default, planner_model=planner_model)

    plan, usage = await orchestrator.plan("x")

    assert plan == GOOD
    assert usage.output_tokens > 0
    assert len(planner_model.requests) == 1
    assert default.requests == []


# --- the example plan in the prompt: what a small model copies -------------------------


def example_in(system: str) -> list[dict]:
    line = system.split("A plan for this request could be:\n", 1)[1].splitlines()[0]
    return json.loads(line)["tasks"]


def test_the_example_shows_parallel_work_then_a_task_that_needs_it() -> None:
    system = planner_system_prompt(Registry.default(), 8, "Explain   how\nHTTPS works")
    tasks = example_in(system)
    assert [(t["id"], t["worker"], t["depends_on"]) for t in tasks] == [
        ("t1", "researcher", []),
        ("t2", "analyst", []),
        ("t3", "writer", ["t1", "t2"]),
    ]
    assert all(t["instructions"].endswith(": Explain how HTTPS works") for t in tasks)
    plan = Plan.model_validate({"tasks": tasks})
    assert validate_plan(plan, Registry.default(), max_tasks=8) == []


@pytest.mark.parametrize(
    ("names", "max_tasks", "expected"),
    [
        (["a", "b", "c"], 8, [("a", []), ("b", []), ("c", ["t1", "t2"])]),
        (["a", "b"], 8, [("a", []), ("b", ["t1"])]),
        (["a"], 8, [("a", [])]),
        (["researcher", "analyst", "writer"], 2, [("researcher", []), ("writer", ["t1"])]),
        (["researcher", "analyst", "writer"], 1, [("researcher", [])]),
    ],
)
def test_the_example_fits_any_team_and_task_limit(
    names: list[str], max_tasks: int, expected: list[tuple[str, list[str]]]
) -> None:
    registry = Registry([worker(name) for name in names])
    tasks = example_in(planner_system_prompt(registry, max_tasks, "do it"))
    assert [(t["worker"], t["depends_on"]) for t in tasks] == expected
    assert validate_plan(Plan.model_validate({"tasks": tasks}), registry, max_tasks=max_tasks) == []
