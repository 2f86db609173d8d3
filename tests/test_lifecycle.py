"""A run never lies about its state: through the Python API, every run ends in a terminal
state with its error and what it spent, ``run_finished`` last; every retry is an event;
timeouts reach every call; an approval covers one execution; outputs come back typed; a
waiting task holds back its whole downstream chain."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from foreman import Orchestrator
from foreman.errors import (
    ConfigError,
    ModelError,
    PlanError,
    ProviderServerError,
    RateLimitError,
)
from foreman.events import (
    ApprovalRequested,
    CallRetried,
    RunFinished,
    TaskFinished,
    TaskRetried,
    TaskStarted,
)
from foreman.models.base import ModelRequest, ModelResponse
from foreman.plan.schema import MAX_TASKS_LIMIT, Plan
from foreman.results import RunStatus, TaskStatus
from foreman.store import Approval, ApprovalStatus, MemoryStore, SQLiteStore, Store
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import (
    NO_DELAY,
    Script,
    TrackingModel,
    collect,
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

TEAM = Registry(
    [
        worker("researcher"),
        worker("writer"),
        worker("reviewer"),
        worker("deployer", risk="high"),
        worker("migrator", risk="high", idempotent=True),
        worker("picky", missing_inputs="skip"),
    ]
)

TWO = plan_of(task("t1"), task("t2", "writer", "t1"))


def orchestrator(model: ScriptedModel, store: Store | None = None, **kwargs: Any) -> Orchestrator:
    kwargs.setdefault("retry", NO_DELAY)
    return Orchestrator(TEAM, model=model, store=store or MemoryStore(), **kwargs)


async def run(orch: Orchestrator, plan: Plan | None = None, **kwargs: Any) -> tuple[Any, list]:
    events: list[Any] = []
    async with asyncio.timeout(LIMIT):
        result = await orch.run("do it", plan=plan, on_event=events.append, **kwargs)
    return result, events


# --- 1. every run ends in a terminal state ----------------------------------------------


@pytest.mark.parametrize(
    "team, kwargs",
    [
        (TEAM, {"model": "nowhere:model-x"}),
        (TEAM, {"model": ScriptedModel([]), "planner_model": "openai:"}),
        (Registry([worker("w", model="nowhere:x")]), {"model": ScriptedModel([])}),
        (Registry([worker("w", fallback_model="nowhere:y")]), {"model": ScriptedModel([])}),
    ],
    ids=["default-model", "planner-model", "worker-model", "worker-fallback-model"],
)
def test_an_unknown_model_fails_at_construction(team: Registry, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Orchestrator(team, **kwargs)


def test_a_missing_api_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    team = Registry([worker("w"), worker("paid", model="openai:gpt-x")])
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Orchestrator(team, model=ScriptedModel([]))


BAD_PLAN = '{"tasks": [{"id": "t1", "worker": "nobody", "instructions": "x", "depends_on": []}]}'


@pytest.mark.parametrize(
    "plans, error",
    [
        ([BAD_PLAN] * 3, PlanError),
        (["this is not a plan {"] * 9, PlanError),
        ([ProviderServerError("503 down")] * 3, ProviderServerError),
        ([RateLimitError("429 slow down")] * 3, RateLimitError),
        ([ModelError("401 bad key")], ModelError),
    ],
    ids=["no-valid-plan", "unparsable-plan", "provider-down", "429-through-all-retries", "bad-key"],
)
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_run_that_fails_in_planning_is_failed_with_what_it_spent(
    plans: list, error: type[Exception], kind: str, tmp_path: Path
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    model = ScriptedModel(Script(plans))
    events: list[Any] = []
    try:
        with pytest.raises(error):
            async with asyncio.timeout(LIMIT):
                await orchestrator(model, store).run("do it", on_event=events.append)
        last = events[-1]
        assert isinstance(last, RunFinished)
        assert last.result.status is RunStatus.failed and last.result.plan is None
        record = await store.get_run(last.run_id)
        assert record.status is RunStatus.failed
        assert record.error == last.result.error and record.error
        spent = sum(len(r.system.split()) for r in model.requests if isinstance(plans[0], str))
        assert record.usage.input_tokens >= spent  # answers that did not parse cost too
        assert last.result.usage == record.usage
        assert last.result.plan_attempts == len(model.requests)
        stored = await store.load_events(last.run_id)
        assert stored[-1]["type"] == "run_finished"
    finally:
        await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_run_failed_in_planning_resumes_and_counts_both_executions(
    kind: str, tmp_path: Path
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    model = TrackingModel(Script([BAD_PLAN] * 3 + [TWO]))
    events: list[Any] = []
    try:
        with pytest.raises(PlanError):
            await orchestrator(model, store).run("do it", on_event=events.append)
        run_id = events[0].run_id
        final = await asyncio.wait_for(orchestrator(model, store).resume(run_id), LIMIT)
        assert final.status is RunStatus.succeeded and final.plan == TWO
        every_answer = sum(response.usage.input_tokens for _, response in model.responses)
        assert final.usage.input_tokens == every_answer  # the failed planning included, once
        assert (await store.get_run(run_id)).usage == final.usage
    finally:
        await store.aclose()


async def test_the_stream_of_a_failed_run_ends_with_run_finished_then_raises() -> None:
    model = ScriptedModel(Script([ProviderServerError("503 down")] * 3))
    events: list[Any] = []
    with pytest.raises(ProviderServerError):
        async for event in orchestrator(model).stream("do it"):
            events.append(event)
    assert events[0].type == "run_started"
    assert events[-1].type == "run_finished" and events[-1].result.status is RunStatus.failed


async def test_an_error_in_the_callers_event_handler_fails_the_run_and_is_raised() -> None:
    class Boom(Exception):
        pass

    def on_event(event: Any) -> None:
        if isinstance(event, TaskStarted) and event.task_id == "t2":
            raise Boom("rendering failed")
        seen.append(event)

    seen: list[Any] = []
    store = MemoryStore()
    with pytest.raises(Boom):
        async with asyncio.timeout(LIMIT):
            await orchestrator(ScriptedModel(Script(TWO)), store).run("do it", on_event=on_event)
    run_id = seen[0].run_id
    record = await store.get_run(run_id)
    assert record.status is RunStatus.failed and "Boom: rendering failed" in record.error
    assert record.usage.input_tokens > 0  # t1 and planning are accounted for
    assert (await store.load_events(run_id))[-1]["type"] == "run_finished"
    assert isinstance(seen[-1], RunFinished) and seen[-1].result.tasks["t1"].succeeded


async def test_a_consumer_that_stops_at_run_finished_leaves_the_run_succeeded(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")  # a real write, so the stream can yield mid-way
    try:
        async for event in orchestrator(ScriptedModel(Script(TWO)), store).stream("do it"):
            if isinstance(event, RunFinished):
                break
        assert (await store.get_run(event.run_id)).status is RunStatus.succeeded
    finally:
        await store.aclose()


# --- 2. every retry is an event, and counted ----------------------------------------------


async def test_planner_review_and_synthesis_retries_are_events_and_counted() -> None:
    synthesis = iter([RateLimitError("429 synthesis"), "FINAL"])
    model = TrackingModel(
        Script(
            [RateLimitError("429 plan"), TWO],
            review={"do t1": [ProviderServerError("503 review"), '{"approved": true}']},
            synthesis=lambda request: next(synthesis),
        )
    )
    result, events = await run(orchestrator(model, validator="reviewer"))

    retried = [(e.purpose, e.task_id, e.attempt) for e in of_type(events, CallRetried)]
    assert retried == [("plan", None, 1), ("review", "t1", 1), ("synthesis", None, 1)]
    assert "429 plan" in of_type(events, CallRetried)[0].error
    assert (result.plan_attempts, result.synthesis_attempts) == (2, 2)
    assert result.tasks["t1"].review_attempts == 2 and result.tasks["t2"].review_attempts == 1
    assert result.attempts == len(model.requests) == 2 + (1 + 2) + (1 + 1) + 2
    assert result.usage.input_tokens == sum(r.usage.input_tokens for _, r in model.responses)


async def test_retries_across_plan_corrections_are_numbered_for_the_whole_planning() -> None:
    model = ScriptedModel(Script([BAD_PLAN, RateLimitError("429"), TWO]))
    result, events = await run(orchestrator(model))
    assert [e.attempt for e in of_type(events, CallRetried)] == [2]
    assert result.plan_attempts == 3


# --- 3. timeouts ----------------------------------------------------------------------------


def slow_first_call_of_each_kind() -> tuple[TrackingModel, list[str]]:
    """Every first call (planner, each task, review, synthesis) hangs; later ones answer."""
    seen: list[str] = []

    def kind(request: ModelRequest) -> str:
        if is_planner(request):
            return "plan"
        if is_synthesis(request):
            return "synthesis"
        return ("review " if is_review(request) else "") + instructions_of(request)

    def latency(request: ModelRequest) -> float:
        what = kind(request)
        first = what not in seen
        seen.append(what)
        return 30.0 if first else 0.0

    return TrackingModel(Script(TWO), latency=latency), seen


async def test_the_orchestrator_timeout_reaches_every_call_and_a_timed_out_call_is_retried():
    model, seen = slow_first_call_of_each_kind()
    result, events = await run(orchestrator(model, timeout=0.05, validator="reviewer"))
    assert result.status is RunStatus.succeeded
    purposes = sorted(e.purpose for e in of_type(events, CallRetried))
    assert purposes == ["plan", "review", "review", "synthesis"]
    assert all("within 0.05s" in e.error for e in of_type(events, CallRetried))
    assert sorted(e.task_id for e in of_type(events, TaskRetried)) == ["t1", "t2"]
    assert Counter(seen) == Counter(
        {"plan": 2, "do t1": 2, "do t2": 2, "review do t1": 2, "review do t2": 2, "synthesis": 2}
    )


async def test_a_workers_own_timeout_wins_over_the_orchestrators() -> None:
    def latency(request: ModelRequest) -> float:
        return 30.0 if instructions_of_or(request) == "do t1" else 0.0

    team = Registry([worker("researcher", timeout=0.05), worker("writer")])
    model = ScriptedModel(Script(TWO), latency=latency)
    orch = Orchestrator(team, model=model, timeout=60.0, retry=NO_DELAY)
    result = await asyncio.wait_for(orch.run("do it", plan=TWO), LIMIT)
    assert result.tasks["t1"].status is TaskStatus.failed  # 0.05 s per call, each attempt
    assert "within 0.05s" in (result.tasks["t1"].error or "")
    assert result.tasks["t1"].attempts == 3


def instructions_of_or(request: ModelRequest) -> str | None:
    if is_planner(request) or is_synthesis(request):
        return None
    return instructions_of(request)


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        orchestrator(ScriptedModel([]), timeout=0)


# --- 5. an approval covers one execution -----------------------------------------------------


class Held(TrackingModel):
    """Holds the worker calls of ``hold`` until ``release``; counts worker calls per task."""

    def __init__(self, script: Any, hold: str) -> None:
        super().__init__(script)
        self.hold, self.calls = hold, Counter[str]()
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        key = instructions_of_or(request)
        if key is not None and not is_review(request):
            self.calls[key.removeprefix("do ")] += 1
            if key == self.hold and not self.release.is_set():
                self.entered.set()
                await self.release.wait()
        return await super().complete(request)


def approver(verdict: bool | None) -> tuple[list[Approval], Any]:
    seen: list[Approval] = []

    def decide(approval: Approval) -> bool | None:
        seen.append(approval.model_copy())
        return verdict

    return seen, decide


async def interrupt_while_running(model: Held, orch: Orchestrator, plan: Plan) -> str:
    events: list[Any] = []
    job = asyncio.ensure_future(orch.run("ship it", plan=plan, on_event=events.append))
    async with asyncio.timeout(LIMIT):
        await model.entered.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    return events[0].run_id


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_approved_task_cut_short_asks_again_saying_it_may_have_run(
    kind: str, tmp_path: Path
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    deploy = plan_of(task("t1"), task("t2", "deployer", "t1"), task("t3", "writer", "t2"))
    model = Held(Script(deploy), hold="do t2")
    first, yes = approver(True)
    try:
        run_id = await interrupt_while_running(
            model, orchestrator(model, store, approve=yes), deploy
        )
        approval = await store.get_approval(run_id, "t2")
        assert approval is not None and approval.started_at is not None  # before the call
        assert [a.may_have_run for a in first] == [False]

        model.release.set()
        later, wait = approver(None)  # nobody answers now: the task waits again
        ev: list[Any] = []
        result = await asyncio.wait_for(
            orchestrator(model, store, approve=wait).resume(run_id, on_event=ev.append), LIMIT
        )
        assert result.status is RunStatus.waiting_approval
        assert [a.may_have_run for a in later] == [True]
        [asked] = of_type(ev, ApprovalRequested)
        assert asked.task_id == "t2" and asked.may_have_run
        [pending] = await store.list_approvals()
        assert (pending.task_id, pending.may_have_run) == ("t2", True)
        assert model.calls == Counter({"t1": 1, "t2": 1})

        await store.decide(run_id, "t2", approved=True, note="checked, run it again")
        final = await asyncio.wait_for(orchestrator(model, store).resume(run_id), LIMIT)
        assert final.status is RunStatus.succeeded
        assert model.calls == Counter({"t1": 1, "t2": 2, "t3": 1})
        done = await store.get_approval(run_id, "t2")
        assert done is not None and done.status is ApprovalStatus.approved
    finally:
        await store.aclose()


async def test_an_idempotent_worker_cut_short_runs_again_without_asking() -> None:
    store = MemoryStore()
    migrate = plan_of(task("t1", "migrator"))
    model = Held(Script(migrate), hold="do t1")
    first, yes = approver(True)
    run_id = await interrupt_while_running(model, orchestrator(model, store, approve=yes), migrate)
    model.release.set()

    def never(approval: Approval) -> bool:
        raise AssertionError("asked again")

    final = await asyncio.wait_for(orchestrator(model, store, approve=never).resume(run_id), LIMIT)
    assert final.status is RunStatus.succeeded and len(first) == 1
    assert model.calls == Counter({"t1": 2})


# --- 6. structured output ---------------------------------------------------------------------


class Report(BaseModel):
    title: str
    score: int


async def test_a_structured_worker_gives_the_caller_its_model_and_the_store_json() -> None:
    team = Registry([worker("researcher", output_schema=Report), worker("writer")])
    script = Script(TWO, tasks={"do t1": '{"title": "T", "score": 3}'})
    store = MemoryStore()
    orch = Orchestrator(team, model=ScriptedModel(script), store=store, retry=NO_DELAY)
    result = await asyncio.wait_for(orch.run("do it", plan=TWO), LIMIT)
    assert result.tasks["t1"].output == Report(title="T", score=3)
    assert result.tasks["t2"].output == "out:do t2"
    stored = await store.load_tasks(result.run_id)
    assert stored["t1"].output == {"title": "T", "score": 3}
    [finished] = [e for e in await store.load_events(result.run_id) if e["type"] == "run_finished"]
    assert finished["result"]["tasks"]["t1"]["output"] == {"title": "T", "score": 3}
    worker_input = payload(worker_requests(orch.models.default, "do t2")[0])  # type: ignore[arg-type]
    assert worker_input["inputs"]["t1"] == {"title": "T", "score": 3}

    replayed = await orch.replay(result.run_id, "t1")
    assert replayed.output == Report(title="T", score=3)


async def test_a_resumed_run_gives_stored_structured_outputs_as_models() -> None:
    team = Registry([worker("researcher", output_schema=Report), worker("deployer", risk="high")])
    plan = plan_of(task("t1"), task("t2", "deployer", "t1"))
    script = Script(plan, tasks={"do t1": '{"title": "T", "score": 3}'})
    store = MemoryStore()
    orch = Orchestrator(team, model=ScriptedModel(script), store=store, retry=NO_DELAY)
    first = await asyncio.wait_for(orch.run("do it", plan=plan), LIMIT)
    assert first.status is RunStatus.waiting_approval
    await store.decide(first.run_id, "t2", approved=True, note=None)
    final = await asyncio.wait_for(orch.resume(first.run_id), LIMIT)
    assert final.status is RunStatus.succeeded
    assert final.tasks["t1"].output == Report(title="T", score=3)  # read back from the store


# --- 7. waiting and skipped dependencies --------------------------------------------------------


async def test_a_waiting_task_holds_back_its_whole_downstream_chain() -> None:
    chain = plan_of(
        task("t1", "deployer"),
        task("t2", "writer", "t1"),
        task("t3", "writer", "t2"),
        task("t4", "writer", "t3", "t5"),
        task("t5"),
    )
    model = TrackingModel(Script(chain))
    events = await collect(orchestrator(model).stream("ship it", plan=chain), limit=LIMIT)
    result = events[-1].result
    assert result.status is RunStatus.waiting_approval
    assert set(result.tasks) == {"t1", "t5"} and result.tasks["t5"].succeeded
    assert [instructions_of(r) for r in worker_requests(model)] == ["do t5"]
    assert not [e for e in of_type(events, TaskStarted) if e.task_id in {"t2", "t3", "t4"}]


async def test_a_skipped_dependency_is_marked_missing_for_its_dependants() -> None:
    plan = plan_of(task("t1"), task("t2", "picky", "t1"), task("t3", "writer", "t2"))
    model = TrackingModel(Script(plan, tasks={"do t1": ModelError("400 bad request")}))
    result, events = await run(orchestrator(model), plan)
    assert result.tasks["t1"].status is TaskStatus.failed
    assert result.tasks["t2"].status is TaskStatus.skipped
    assert result.tasks["t2"].missing_inputs == ["t1"]
    assert result.tasks["t3"].succeeded and result.tasks["t3"].missing_inputs == ["t2"]
    [sent] = worker_requests(model, "do t3")
    marker = payload(sent)["inputs"]["t2"]
    assert marker["missing"] is True and marker["reason"].startswith("task skipped:")
    assert [e.task_id for e in of_type(events, TaskFinished)] == ["t3"]
    assert json.loads(json.dumps(result.confidence))["t3"] < 1.0


def test_max_tasks_beyond_the_ceiling_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="max_tasks must be between 1 and"):
        Orchestrator(model=ScriptedModel([]), max_tasks=MAX_TASKS_LIMIT + 1)
    assert Orchestrator(model=ScriptedModel([]), max_tasks=MAX_TASKS_LIMIT).max_tasks == 50


@pytest.mark.parametrize("make_store", [MemoryStore, "sqlite"])
async def test_a_resumed_run_reads_running_while_it_runs(make_store, tmp_path) -> None:
    """Not its old status: `rm` must refuse it, and a crash of the resume shows ``crashed``."""
    store = SQLiteStore(tmp_path / "r.db") if make_store == "sqlite" else make_store()
    plan = plan_of(task("t1"), task("t2", "deployer", "t1"))
    paused, _ = await run(orchestrator(ScriptedModel(Script(plan)), store))
    assert paused.status is RunStatus.waiting_approval
    await store.decide(paused.run_id, "t2", approved=True, note=None)

    seen: list[RunStatus] = []
    model = ScriptedModel(Script(plan))
    answer = model.complete

    async def looking_first(request: ModelRequest) -> ModelResponse:
        if not is_synthesis(request) and instructions_of(request) == "do t2":  # resumed task
            seen.append((await store.get_run(paused.run_id)).status)
        return await answer(request)

    model.complete = looking_first  # type: ignore[method-assign]
    async with asyncio.timeout(LIMIT):
        result = await orchestrator(model, store).resume(paused.run_id)
    assert seen == [RunStatus.running]
    assert result.status is RunStatus.succeeded
    await store.aclose()


async def test_a_runs_call_counters_hold_however_it_ends() -> None:
    """``plan_attempts`` and ``replan_attempts`` are this execution's calls of each kind,
    also when a budget stops the run (a revision's call read 0) or it is cancelled (its
    planning read 0)."""
    from foreman import Budget
    from replan_helpers import KEEP, TEAM
    from replan_helpers import model as replanning

    chain = plan_of(task("t1"), task("t2", "researcher", "t1"), task("t3", "researcher", "t2"))
    stopped = await Orchestrator(
        TEAM,
        model=replanning(chain, lambda shown: KEEP),
        replan="always",
        assembly="concat",
        budget=Budget(max_calls=4),  # the plan, t1, a revision, t2
    ).run("go")
    assert stopped.status is RunStatus.over_budget
    assert (stopped.plan_attempts, stopped.replan_attempts) == (1, 1)

    store, second = MemoryStore(), asyncio.Event()
    slow = ScriptedModel(Script(chain), latency=lambda r: 5.0 if "do t2" in str(r.messages) else 0)

    def on_event(event: Any) -> None:
        if isinstance(event, TaskStarted) and event.task_id == "t2":
            second.set()

    orchestrator = Orchestrator([worker("researcher")], model=slow, store=store)
    running = asyncio.create_task(orchestrator.run("go", on_event=on_event))
    await asyncio.wait_for(second.wait(), 10)
    await store.cancel_run((await store.list_runs(1))[0].run_id)
    cancelled = await asyncio.wait_for(running, 10)
    assert cancelled.status is RunStatus.cancelled and cancelled.plan_attempts == 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_answer_with_a_lone_surrogate_is_stored_mended(kind, tmp_path) -> None:
    """A provider's JSON may escape a lone surrogate ("\\ud800"): such an answer could not
    be serialised, and the whole run ended in a PydanticSerializationError."""
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    plan = plan_of(task("t1"), task("t2", "researcher", "t1"))
    script = Script(plan, tasks={"do t1": "bad \ud800 text", "do t2": "pair \ud83d\ude00"})
    orchestrator = Orchestrator([worker("researcher")], model=ScriptedModel(script), store=store)
    try:
        result = await orchestrator.run("x", plan=plan)
        assert result.status is RunStatus.succeeded
        stored = await store.load_tasks(result.run_id)
        assert stored["t1"].output == "bad \ufffd text"  # one mark for the one bad character
        assert stored["t2"].output == "pair \U0001f600"  # a split pair is its character
    finally:
        await store.aclose()
