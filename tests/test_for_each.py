"""For-each tasks: one task per item of a dependency's structured output, decided by the
engine without a model call, run in parallel, joined in item order, durable on resume."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from foreman import Orchestrator, RunResult
from foreman.errors import ModelError
from foreman.events import (
    EVENT_ADAPTER,
    TaskExpanded,
    TaskFailed,
    TaskFinished,
    TaskSkipped,
    TaskStarted,
)
from foreman.models.base import ModelRequest, ModelResponse
from foreman.plan.foreach import ITEM_INPUT, find_task, item_ids_of, items_at, split_ref
from foreman.results import RunStatus, TaskStatus
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import (
    Script,
    TrackingModel,
    instructions_of,
    is_planner,
    is_review,
    is_synthesis,
    of_type,
    payload,
    plan_of,
    task,
    worker,
    worker_requests,
)

LIMIT = 10.0


class Files(BaseModel):
    files: list[str]


class Loose(BaseModel):
    data: dict[str, Any]


TEAM = Registry(
    [
        worker("lister", output_schema=Files),
        worker("loose", output_schema=Loose),
        worker("researcher"),
        worker("writer"),
        worker("strict", on_failure="abort"),
        worker("pair", max_concurrency=2),
        worker("gated", risk="high"),
    ]
)


def item_of(request: ModelRequest) -> Any:
    return payload(request)["inputs"].get(ITEM_INPUT)


def is_item(request: ModelRequest) -> bool:
    worker_call = not (is_planner(request) or is_synthesis(request) or is_review(request))
    return worker_call and ITEM_INPUT in payload(request)["inputs"]


def files(*names: str) -> str:
    return json.dumps({"files": list(names)})


def per_item(request: ModelRequest) -> str:
    return f"read {item_of(request)}"


FAN = plan_of(
    task("t1", "lister"),
    task("t2", "researcher", "t1", for_each="t1.files"),
    task("t3", "writer", "t2"),
)


class BarrierModel(TrackingModel):
    """Item calls wait until ``expected`` of them are in flight at once: run one after
    another, they would never all arrive, and the test fails at its time limit."""

    def __init__(self, script: Any, expected: int, **kwargs: Any) -> None:
        super().__init__(script, **kwargs)
        self.expected = expected
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.finished: list[Any] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if is_item(request):
            self.arrived += 1
            if self.arrived == self.expected:
                self.all_in.set()
            await self.all_in.wait()
            # later items answer first, so joining in finishing order would show
            for _ in range(self.expected - self.arrived):
                await asyncio.sleep(0)
        response = await super().complete(request)
        if is_item(request):
            self.finished.append(item_of(request))
        return response


async def run(
    plan: Any, model: ScriptedModel, *, team: Registry = TEAM, **kwargs: Any
) -> tuple[RunResult, list[Any]]:
    events: list[Any] = []
    orchestrator = Orchestrator(team, model=model, **kwargs)
    async with asyncio.timeout(LIMIT):
        result = await orchestrator.run("read them", plan=plan, on_event=events.append)
    return result, events


# --- expansion and joining ------------------------------------------------------------


async def test_n_items_run_as_n_parallel_tasks_and_dependants_get_every_output_in_order() -> None:
    model = BarrierModel(
        Script(tasks={"do t1": files("a.py", "b.py", "c.py"), "do t2": per_item}), expected=3
    )
    result, events = await run(FAN, model)

    assert result.status is RunStatus.succeeded
    # all three were in flight together (the barrier), and did not finish in item order
    assert model.arrived == 3 and model.all_in.is_set()
    assert model.finished != ["a.py", "b.py", "c.py"]
    (expanded,) = of_type(events, TaskExpanded)
    assert (expanded.task_id, expanded.count) == ("t2", 3)
    assert expanded.item_ids == ["t2.1", "t2.2", "t2.3"]
    started = [e.task_id for e in of_type(events, TaskStarted)]
    assert started[:1] == ["t1"] and set(started[1:4]) == {"t2.1", "t2.2", "t2.3"}
    assert started[4:] == ["t3"]  # the join itself calls no model
    joined = ["read a.py", "read b.py", "read c.py"]
    assert result.tasks["t2"].output == joined and result.tasks["t2"].attempts == 0
    (t3_call,) = worker_requests(model, "do t3")
    assert payload(t3_call)["inputs"] == {"t2": joined}
    # each item sees its item, not the whole list, with the task's own instructions
    item_calls = [r for r in model.requests if is_item(r)]
    assert sorted(item_of(r) for r in item_calls) == ["a.py", "b.py", "c.py"]
    assert all(payload(r)["inputs"].keys() == {ITEM_INPUT} for r in item_calls)
    assert all(instructions_of(r) == "do t2" for r in item_calls)
    assert events.index(expanded) < min(
        events.index(e) for e in of_type(events, TaskStarted) if e.task_id.startswith("t2.")
    )


async def test_items_are_tasks_in_the_store_and_the_ledger_each_under_its_own_id(
    tmp_path: Any,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b"), "do t2": per_item}))
    result, events = await run(FAN, model, store=store)

    stored = await store.load_tasks(result.run_id)
    assert set(stored) == {"t1", "t2.1", "t2.2", "t2", "t3"}
    assert stored["t2.2"].output == "read b" and stored["t2"].output == ["read a", "read b"]
    calls = await store.list_calls(run_id=result.run_id, task_id="t2.2")
    assert [(c.parent, c.purpose, c.worker) for c in calls] == [("task:t2.2", "task", "researcher")]
    assert stored["t2.2"].usage == calls[0].usage
    assert stored["t2"].usage.total_tokens == 0  # its items' tokens are theirs, counted once
    finished = {e.task_id for e in of_type(events, TaskFinished)}
    assert finished == {"t1", "t2.1", "t2.2", "t2", "t3"}
    for event in of_type(events, TaskExpanded):  # round-trips as JSON like every event
        assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event
    await store.aclose()


async def test_other_dependencies_reach_every_item_and_the_items_wait_for_them() -> None:
    plan = plan_of(
        task("t1", "lister"),
        task("t2", "writer"),
        task("t3", "researcher", "t1", "t2", for_each="t1.files"),
    )
    model = ScriptedModel(Script(tasks={"do t1": files("x", "y")}))
    result, _ = await run(plan, model)

    assert result.tasks["t3"].output == ["out:do t3", "out:do t3"]
    for request in worker_requests(model, "do t3"):
        assert payload(request)["inputs"]["t2"] == "out:do t2"
        assert item_of(request) in ("x", "y")


async def test_an_empty_list_succeeds_with_no_items_and_dependants_get_an_empty_list() -> None:
    model = ScriptedModel(Script(tasks={"do t1": files()}))
    result, events = await run(FAN, model)

    assert result.status is RunStatus.succeeded
    assert result.tasks["t2"].output == [] and result.tasks["t2"].succeeded
    assert of_type(events, TaskExpanded)[0].item_ids == []
    assert worker_requests(model, "do t2") == []
    assert payload(worker_requests(model, "do t3")[0])["inputs"] == {"t2": []}


async def test_a_for_each_task_can_iterate_over_another_ones_outputs() -> None:
    plan = plan_of(
        task("t1", "lister"),
        task("t2", "researcher", "t1", for_each="t1.files"),
        task("t3", "writer", "t2", for_each="t2"),
    )
    model = ScriptedModel(
        Script(tasks={"do t1": files("a", "b"), "do t2": per_item, "do t3": per_item})
    )
    result, _ = await run(plan, model)

    assert result.tasks["t3"].output == ["read read a", "read read b"]
    assert {"t3.1", "t3.2"} <= result.tasks.keys()


# --- what does not expand -----------------------------------------------------------------


async def test_no_list_where_the_reference_points_fails_the_task_with_the_reason() -> None:
    plan = plan_of(
        task("t1", "loose"),
        task("t2", "researcher", "t1", for_each="t1.data.files"),
        task("t3", "writer", "t2"),
    )
    model = ScriptedModel(Script(tasks={"do t1": json.dumps({"data": {"names": ["a"]}})}))
    result, events = await run(plan, model)

    t2 = result.tasks["t2"]
    assert t2.status is TaskStatus.failed
    assert t2.error == "for_each 't1.data.files': data has no 'files' (its keys: names)"
    assert [e.task_id for e in of_type(events, TaskFailed)] == ["t2"]
    assert not of_type(events, TaskExpanded) and worker_requests(model, "do t2") == []
    # its dependant runs with the usual missing-input marker; the run is partial
    assert payload(worker_requests(model, "do t3")[0])["inputs"]["t2"]["missing"] is True
    assert result.status is RunStatus.partial


async def test_a_non_list_under_an_abort_policy_aborts_the_run() -> None:
    plan = plan_of(task("t1", "loose"), task("t2", "strict", "t1", for_each="t1.data.x"))
    model = ScriptedModel(Script(tasks={"do t1": json.dumps({"data": {"x": {"a": 1}}})}))
    result, _ = await run(plan, model)

    assert result.status is RunStatus.aborted
    assert result.tasks["t2"].error == "for_each 't1.data.x': expected a list, got an object"


async def test_a_dependency_that_failed_skips_the_for_each_task() -> None:
    model = ScriptedModel(Script(tasks={"do t1": ModelError("lister down")}))
    result, events = await run(FAN, model)

    assert result.tasks["t2"].status is TaskStatus.skipped
    assert result.tasks["t2"].error == "its items come from t1, which failed"
    assert [e.task_id for e in of_type(events, TaskSkipped)] == ["t2"]


# --- items that fail ----------------------------------------------------------------------


def failing_on(*bad: str) -> Any:
    def answer(request: ModelRequest) -> Any:
        item = item_of(request)
        return ModelError(f"cannot read {item}") if item in bad else f"read {item}"

    return answer


async def test_some_items_failing_leave_markers_in_place_and_the_run_partial() -> None:
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b", "c"), "do t2": failing_on("b")}))
    result, _ = await run(FAN, model)

    t2 = result.tasks["t2"]
    assert t2.succeeded and t2.missing_inputs == ["t2.2"]
    assert t2.output[0] == "read a" and t2.output[2] == "read c"
    assert t2.output[1]["missing"] is True and "cannot read b" in t2.output[1]["reason"]
    assert result.tasks["t2.2"].status is TaskStatus.failed
    assert result.status is RunStatus.partial
    assert result.confidence["t2"] < 1.0
    assert "t2.2 (researcher) failed: cannot read b" in (result.answer or "")


async def test_an_item_missing_upstream_is_skipped_downstream_not_given_to_the_worker() -> None:
    """Over another for-each task's list, the marker of an item that failed there is not an
    item to work on: its item here is skipped, with the reason, and counted as missing."""
    plan = plan_of(
        task("t1", "lister"),
        task("t2", "researcher", "t1", for_each="t1.files"),
        task("t3", "writer", "t2", for_each="t2"),
    )
    model = ScriptedModel(
        Script(tasks={"do t1": files("a", "b", "c"), "do t2": failing_on("b"), "do t3": per_item})
    )
    result, events = await run(plan, model)

    assert sorted(item_of(r) for r in worker_requests(model, "do t3")) == ["read a", "read c"]
    t32 = result.tasks["t3.2"]
    assert t32.status is TaskStatus.skipped
    assert "t2.2" in (t32.error or "") and "cannot read b" in (t32.error or "")
    assert "t3.2" in [e.task_id for e in of_type(events, TaskSkipped)]
    t3 = result.tasks["t3"]
    assert t3.succeeded and t3.missing_inputs == ["t3.2"]
    assert t3.output[0] == "read read a" and t3.output[2] == "read read c"
    assert t3.output[1]["missing"] is True
    assert result.status is RunStatus.partial


async def test_every_item_failing_fails_the_task() -> None:
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b"), "do t2": failing_on("a", "b")}))
    result, _ = await run(FAN, model)

    assert result.tasks["t2"].status is TaskStatus.failed
    assert result.tasks["t2"].error.startswith("none of its 2 items succeeded (t2.1: ")


async def test_an_item_failing_under_an_abort_policy_aborts_the_run() -> None:
    plan = plan_of(task("t1", "lister"), task("t2", "strict", "t1", for_each="t1.files"))
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b"), "do t2": failing_on("a")}))
    result, _ = await run(plan, model, concurrency=1)

    assert result.status is RunStatus.aborted
    assert result.tasks["t2.1"].status is TaskStatus.failed
    assert "t2" not in result.tasks


# --- limits, approvals, resume ------------------------------------------------------------


async def test_items_respect_the_worker_limit_and_the_run_concurrency() -> None:
    plan = plan_of(task("t1", "lister"), task("t2", "pair", "t1", for_each="t1.files"))
    model = TrackingModel(
        Script(tasks={"do t1": files(*"abcdef"), "do t2": per_item}), latency=0.001
    )
    result, _ = await run(plan, model)
    assert result.tasks["t2"].output == [f"read {c}" for c in "abcdef"]
    assert model.max_by_worker["You are the pair worker."] == 2

    model = TrackingModel(Script(tasks={"do t1": files(*"abcdef")}), latency=0.001)
    await run(FAN, model, concurrency=3)
    assert model.max_in_flight == 3


async def test_risky_items_each_wait_for_approval_and_resume_runs_only_those_approved(
    tmp_path: Any,
) -> None:
    plan = plan_of(
        task("t1", "lister"),
        task("t2", "gated", "t1", for_each="t1.files"),
        task("t3", "writer", "t2"),
    )
    store = SQLiteStore(tmp_path / "runs.db")
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b"), "do t2": per_item}))
    first, _ = await run(plan, model, store=store)
    assert first.status is RunStatus.waiting_approval
    pending = await store.list_approvals()
    assert sorted(a.task_id for a in pending) == ["t2.1", "t2.2"]
    assert "t3" not in first.tasks and "t2" not in first.tasks  # held behind the items
    for approval in pending:
        await store.decide(first.run_id, approval.task_id, approved=True, note=None)

    orchestrator = Orchestrator(TEAM, model=model, store=store)
    async with asyncio.timeout(LIMIT):
        result = await orchestrator.resume(first.run_id)
    assert result.status is RunStatus.succeeded
    assert result.tasks["t2"].output == ["read a", "read b"]
    assert len(worker_requests(model, "do t1")) == 1
    await store.aclose()


class HoldItem(ScriptedModel):
    """Item ``hold``'s call waits until released; ``entered`` says it is waiting."""

    def __init__(self, script: Any, hold: str) -> None:
        super().__init__(script)
        self.hold = hold
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.items: Counter[Any] = Counter()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if is_item(request):
            self.items[item_of(request)] += 1
            if item_of(request) == self.hold and not self.release.is_set():
                self.entered.set()
                await self.release.wait()
        return await super().complete(request)


async def test_resume_after_an_interruption_runs_only_the_items_not_yet_done(
    tmp_path: Any,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    model = HoldItem(Script(tasks={"do t1": files("a", "b", "c"), "do t2": per_item}), hold="b")
    events: list[Any] = []
    others_stored = asyncio.Event()  # a settling event is delivered after its checkpoint

    def on_event(event: Any) -> None:
        events.append(event)
        if {"t2.1", "t2.3"} <= {e.task_id for e in of_type(events, TaskFinished)}:
            others_stored.set()

    job = asyncio.ensure_future(
        Orchestrator(TEAM, model=model, store=store).run("read them", plan=FAN, on_event=on_event)
    )
    async with asyncio.timeout(LIMIT):
        await model.entered.wait()
        await others_stored.wait()
    run_id = events[0].run_id
    assert set(await store.load_tasks(run_id)) == {"t1", "t2.1", "t2.3"}
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert (await store.get_run(run_id)).status is RunStatus.interrupted

    model.release.set()
    again = SQLiteStore(tmp_path / "runs.db")  # as another process would open it
    resumed: list[Any] = []
    async with asyncio.timeout(LIMIT):
        result = await Orchestrator(TEAM, model=model, store=again).resume(
            run_id, on_event=resumed.append
        )

    assert result.status is RunStatus.succeeded
    assert result.tasks["t2"].output == ["read a", "read b", "read c"]
    assert model.items == Counter({"a": 1, "b": 2, "c": 1})  # b was cut short, once
    assert [e.task_id for e in of_type(resumed, TaskStarted)] == ["t2.2", "t3"]
    assert of_type(resumed, TaskExpanded)[0].item_ids == ["t2.1", "t2.2", "t2.3"]
    assert len(worker_requests(model, "do t1")) == 1
    await store.aclose()
    await again.aclose()


# --- the reference, and finding item tasks ------------------------------------------------


def test_a_reference_is_a_dependency_id_then_a_path_the_longest_id_winning() -> None:
    assert split_ref("t1.files", ["t1", "t2"]) == ("t1", ["files"])
    assert split_ref("t1", ["t1"]) == ("t1", [])
    assert split_ref("a.b.c", ["a", "a.b"]) == ("a.b", ["c"])
    assert split_ref("t3.files", ["t1"]) is None
    assert split_ref("t10", ["t1"]) is None


def test_items_at_walks_objects_and_list_indexes_and_names_what_is_wrong() -> None:
    assert items_at({"a": [{"b": [1, 2]}]}, ["a", "0", "b"], "r") == [1, 2]
    with pytest.raises(ValueError, match="'r': a is text, so it has no 'b'"):
        items_at({"a": "x"}, ["a", "b"], "r")
    with pytest.raises(ValueError, match="expected a list, got text"):
        items_at("plain", [], "r")


def test_item_tasks_are_found_by_id_under_their_for_each_task() -> None:
    assert (found := find_task(FAN, "t2.3")) is not None
    assert (found.id, found.worker, found.depends_on, found.for_each) == (
        "t2.3",
        "researcher",
        ["t1"],
        None,
    )
    assert find_task(FAN, "t3.1") is None and find_task(FAN, "t2.0") is None
    assert item_ids_of("t2", ["t2.10", "t2", "t2.2", "t20.1", "t2.1"]) == ["t2.1", "t2.2", "t2.10"]


async def test_traces_and_logs_show_the_expansion(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from foreman.tracing.logs import LoggingObserver
    from foreman.tracing.otel import OTelObserver

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b")}))
    with caplog.at_level("INFO", logger="foreman.events"):
        await run(FAN, model, observers=[OTelObserver(provider), LoggingObserver()])

    tasks = {
        span.attributes["foreman.task_id"]: span
        for span in exporter.get_finished_spans()
        if span.name == "foreman.task"
    }
    assert set(tasks) == {"t1", "t2", "t2.1", "t2.2", "t3"}
    t2 = tasks["t2"]
    assert t2.attributes["foreman.items"] == 2 and t2.attributes["foreman.status"] == "succeeded"
    for item in ("t2.1", "t2.2"):  # the for-each task's span covers its items'
        assert t2.start_time <= tasks[item].start_time <= tasks[item].end_time <= t2.end_time
    (line,) = [r.getMessage() for r in caplog.records if "task_expanded" in r.getMessage()]
    assert "task=t2" in line and "count=2" in line


async def test_each_item_is_judged_as_its_task_would_be() -> None:
    team = Registry([*TEAM, worker("critic")])
    plan = plan_of(
        task("t1", "lister"),
        task("t2", "researcher", "t1", for_each="t1.files", judge="critic", max_rounds=2),
    )
    rejecting = '{"approved": false, "reasons": ["too thin"]}'
    model = ScriptedModel(Script(tasks={"do t1": files("a", "b")}, review=rejecting))
    events: list = []
    result = await Orchestrator(team, model=model, assembly="concat").run(
        "x", plan=plan, on_event=events.append
    )
    reviews = [request for request in model.requests if is_review(request)]
    assert len(reviews) == 4  # two rounds for each of the two items
    assert sum(event.type == "task_validated" for event in events) == 4
    assert [result.tasks[item].approved for item in ("t2.1", "t2.2")] == [False, False]
