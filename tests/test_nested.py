"""Hierarchies: a team (an orchestrator) registered as a worker of another, its tasks run
as nested runs: durable, linked to the parent task, events and books carried up,
approvals deep inside surfaced, failures reaching the parent as failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.helpers import (
    Script,
    latency_by_instructions,
    plan_of,
    task,
    worker,
    worker_requests,
)

from foreman import Orchestrator
from foreman.engine.nesting import child_run_id
from foreman.errors import ConfigError, ForemanError, ModelError
from foreman.events import EVENT_ADAPTER, ApprovalRequested, NestedEvent, TaskStarted
from foreman.ledger.books import Books
from foreman.ledger.budget import Budget
from foreman.results import RunStatus, TaskStatus
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.nested import TeamWorker
from foreman.workers.registry import load_team

TOP_PLAN = plan_of(task("t1", "researcher"), task("t2", "review", "t1"))
CHILD_PLAN = plan_of(task("c1", "checker"), task("c2", "publisher", "c1"))


def teams(model: ScriptedModel, store, *, risk: str = "low", **child_options):
    """A top-level orchestrator whose ``review`` worker is a team (checker -> publisher)."""
    child = Orchestrator(
        [worker("checker"), worker("publisher", risk=risk, **child_options)], model=model
    )
    review = TeamWorker(name="review", description="Reviews and publishes.", team=child)
    return Orchestrator([worker("researcher"), review], model=model, store=store)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path: Path):
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "runs.db")
    yield store
    await store.aclose()


async def test_a_team_task_runs_as_a_linked_nested_run_with_its_cost_rolled_up(store) -> None:
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store)
    events = []
    result = await top.run("Write and publish", plan=TOP_PLAN, on_event=events.append)

    assert result.status is RunStatus.succeeded
    assert result.tasks["t2"].output == "published"  # the nested run's answer
    child_id = child_run_id(result.run_id, "t2")
    child = await store.get_run(child_id)
    assert (child.parent_run_id, child.parent_task_id) == (result.run_id, "t2")
    assert child.status is RunStatus.succeeded
    assert [c.run_id for c in await store.child_runs(result.run_id)] == [child_id]

    # Books: the parent's are its own rows plus the nested run's, each counted once.
    own = Books.of(await store.list_calls(run_id=result.run_id))
    nested = Books.of(await store.list_calls(run_id=child_id))
    every = Books.of(await store.list_calls(run_id=result.run_id, descendants=True))
    assert nested.calls == 4  # plan, c1, c2, synthesis
    assert every.calls == own.calls + nested.calls
    assert (result.usage, result.calls) == (every.usage, every.calls)
    assert result.tasks["t2"].usage == nested.usage == child.usage
    assert (await store.get_run(result.run_id)).usage == every.usage

    # The nested run's events reach the parent's stream, tagged with the parent task.
    wrapped = [e for e in events if isinstance(e, NestedEvent)]
    assert wrapped and {(e.run_id, e.task_id, e.child_run_id) for e in wrapped} == {
        (result.run_id, "t2", child_id)
    }
    assert {e.event.task_id for e in wrapped if isinstance(e.event, TaskStarted)} == {"c1", "c2"}


async def test_an_approval_deep_inside_pauses_both_and_resume_continues_the_nested_run(
    store,
) -> None:
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store, risk="high")
    events = []
    paused = await top.run("Write and publish", plan=TOP_PLAN, on_event=events.append)

    child_id = child_run_id(paused.run_id, "t2")
    assert paused.status is RunStatus.waiting_approval
    assert paused.tasks["t2"].status is TaskStatus.waiting
    assert (await store.get_run(child_id)).status is RunStatus.waiting_approval
    [pending] = await store.list_approvals()
    assert (pending.run_id, pending.task_id, pending.worker) == (child_id, "c2", "publisher")
    asked = [e for e in events if isinstance(e, NestedEvent)]
    assert any(isinstance(e.event, ApprovalRequested) for e in asked)

    await store.decide(child_id, "c2", approved=True, note=None)
    done = await top.resume(paused.run_id)

    assert done.status is RunStatus.succeeded
    assert done.tasks["t2"].output == "published"
    assert len(await store.child_runs(paused.run_id)) == 1  # continued, not started anew
    assert len(worker_requests(model, "do c1")) == 1  # its finished task not repeated
    assert len(worker_requests(model, "do c2")) == 1
    assert len(worker_requests(model, "do t1")) == 1
    every = Books.of(await store.list_calls(run_id=paused.run_id, descendants=True))
    assert (done.usage, done.calls) == (every.usage, every.calls)


async def test_a_paused_nested_run_cancelled_alone_fails_only_its_parents_task(store) -> None:
    """`foreman cancel PARENT.t2`, then resume PARENT: no task of the cancelled nested run
    failed, and naming one to blame raised IndexError, failing the whole parent run."""
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store, risk="high")
    paused = await top.run("Write and publish", plan=TOP_PLAN)
    child_id = child_run_id(paused.run_id, "t2")
    await store.cancel_run(child_id)

    done = await top.resume(paused.run_id)

    assert done.status is RunStatus.partial, done.error
    failed = done.tasks["t2"]
    assert failed.status is TaskStatus.failed
    assert failed.error.startswith(f"nested run {child_id} cancelled")
    assert done.tasks["t1"].status is TaskStatus.succeeded
    assert not worker_requests(model, "do c2")  # the cancelled nested run never went on


async def test_a_nested_failure_fails_the_parent_task_and_names_the_nested_run(store) -> None:
    model = ScriptedModel(Script(CHILD_PLAN, tasks={"do c2": ModelError("printer on fire")}))
    top = teams(model, store, on_failure="abort", retry={"max_attempts": 1})
    result = await top.run("Write and publish", plan=TOP_PLAN)

    child_id = child_run_id(result.run_id, "t2")
    failed = result.tasks["t2"]
    assert failed.status is TaskStatus.failed
    assert child_id in failed.error and "c2" in failed.error and "printer on fire" in failed.error
    assert result.status is RunStatus.partial  # the parent went on without it...
    assert failed.output is None  # ...and never took the nested run's failure for an answer
    assert (await store.get_run(child_id)).status is RunStatus.aborted
    assert failed.usage == (await store.get_run(child_id)).usage  # what it spent, still


async def test_runs_nest_no_deeper_than_max_depth(store) -> None:
    model = ScriptedModel(Script(CHILD_PLAN))
    top = teams(model, store)
    top.config = top.config.model_copy(update={"max_depth": 0})
    result = await top.run("Write and publish", plan=TOP_PLAN)

    assert result.tasks["t2"].status is TaskStatus.failed
    assert "max_depth" in result.tasks["t2"].error
    assert await store.child_runs(result.run_id) == []


async def test_three_levels_carry_events_and_books_up_through_the_middle(store) -> None:
    inner_plan = plan_of(task("i1", "checker"))
    middle_plan = plan_of(task("m1", "inner"))
    model = ScriptedModel(Script([middle_plan, inner_plan], synthesis="ok"))
    inner = Orchestrator([worker("checker")], model=model)
    middle = Orchestrator(
        [TeamWorker(name="inner", description="The inner team.", team=inner)], model=model
    )
    top = Orchestrator(
        [TeamWorker(name="middle", description="The middle team.", team=middle)],
        model=model,
        store=store,
    )
    events = []
    result = await top.run("Go deep", plan=plan_of(task("t1", "middle")), on_event=events.append)

    assert result.status is RunStatus.succeeded
    middle_id = child_run_id(result.run_id, "t1")
    inner_id = child_run_id(middle_id, "m1")
    assert (await store.get_run(inner_id)).parent_run_id == middle_id
    deepest = [e.event for e in events if isinstance(e, NestedEvent)]
    assert any(isinstance(e, NestedEvent) and e.child_run_id == inner_id for e in deepest)
    for event in events:  # envelopes within envelopes round-trip through JSON (--json)
        assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event
    every = Books.of(await store.list_calls(run_id=result.run_id, descendants=True))
    # One task answers for its run (no synthesis): top 0 calls, middle 1 (its plan),
    # inner 2 (plan, i1); the inner ones are in the middle's books too, counted once.
    assert result.calls == every.calls == 3
    assert (await store.get_run(middle_id)).calls == 3


# --- team files ------------------------------------------------------------------------


@pytest.mark.parametrize("named", ["''", "'  '", "5", "[a.yaml]"])
def test_a_team_entry_that_names_no_file_is_a_clear_error(tmp_path: Path, named: str) -> None:
    """`team: ''` read the team file's own folder: 'Cannot read team file .: Is a directory'."""
    path = tmp_path / "top.yaml"
    path.write_text(f"workers:\n  - {{name: t, description: d, team: {named}}}\n")
    with pytest.raises(ConfigError, match="'team' must be the path of a team file"):
        load_team(path)


def test_a_team_file_worker_can_name_another_team_file(tmp_path: Path) -> None:
    (tmp_path / "review.yaml").write_text(
        "workers:\n"
        "  - {name: publisher, description: Publishes., system_prompt: You publish., "
        "risk: high}\n"
    )
    (tmp_path / "top.yaml").write_text(
        "workers:\n"
        "  - {name: writer, description: Writes., system_prompt: You write.}\n"
        "  - {name: review, description: Reviews and publishes., team: review.yaml}\n"
    )
    registry = load_team(tmp_path / "top.yaml")
    review = registry.get("review")
    assert isinstance(review, TeamWorker)
    assert review.team.registry.get("publisher").risk.value == "high"


def test_team_files_naming_each_other_in_a_cycle_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("workers:\n  - {name: b, description: B., team: b.yaml}\n")
    (tmp_path / "b.yaml").write_text("workers:\n  - {name: a, description: A., team: a.yaml}\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_team(tmp_path / "a.yaml")


async def test_a_team_file_team_runs_nested_with_the_parents_models(tmp_path: Path, store) -> None:
    (tmp_path / "review.yaml").write_text(
        "workers:\n"
        "  - {name: checker, description: Checks., system_prompt: You check.}\n"
        "  - {name: publisher, description: Publishes., system_prompt: You publish.}\n"
    )
    (tmp_path / "top.yaml").write_text(
        "workers:\n"
        "  - {name: researcher, description: Researches., system_prompt: You research.}\n"
        "  - {name: review, description: Reviews and publishes., team: review.yaml}\n"
    )
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = Orchestrator(load_team(tmp_path / "top.yaml"), model=model, store=store)
    result = await top.run("Write and publish", plan=TOP_PLAN)

    assert result.status is RunStatus.succeeded
    child = await store.get_run(child_run_id(result.run_id, "t2"))
    assert child.settings["team"] == str(tmp_path / "review.yaml")
    assert len(worker_requests(model, "do c2")) == 1


class TwoSteps:
    """A planned team, as a pipeline is: its own workers and a plan for each request."""

    def workers(self):
        return [worker("checker"), worker("publisher")]

    def plan_for(self, request: str):
        assert request.startswith("do t2")  # the parent task's instructions, then its inputs
        return CHILD_PLAN


async def test_a_planned_team_runs_its_own_plan_as_the_nested_run(store) -> None:
    model = ScriptedModel(Script(None, synthesis="both steps"))  # no planner call at all
    review = TeamWorker(name="review", description="Two steps.", team=TwoSteps())
    top = Orchestrator([worker("researcher"), review], model=model, store=store)
    result = await top.run("Write and publish", plan=TOP_PLAN)

    assert result.status is RunStatus.succeeded
    assert result.tasks["t2"].output == "both steps"
    child = await store.get_run(child_run_id(result.run_id, "t2"))
    assert [t.id for t in child.plan.tasks] == ["c1", "c2"]
    with pytest.raises(ForemanError, match="nested run"):  # replay one of its tasks instead
        await top.replay(result.run_id, "t2")


def test_a_team_worker_needs_something_that_can_run_a_team() -> None:
    with pytest.raises(ValueError, match="run_child"):
        TeamWorker(name="review", description="Nothing.", team="review.yaml")


async def test_cancelling_the_parent_cancels_the_nested_run_it_was_running(store) -> None:
    started = asyncio.Event()

    def latency(request) -> float:  # c2's call starts, and takes its time
        if "do c2" not in request.messages[0].content:
            return 0.0
        started.set()
        return 30.0

    model = ScriptedModel(Script(CHILD_PLAN), latency=latency)
    top = teams(model, store)
    running = asyncio.create_task(top.run("Write and publish", plan=TOP_PLAN))
    await asyncio.wait_for(started.wait(), 10)
    [summary] = [run for run in await store.list_runs() if run.parent_run_id is None]
    await store.cancel_run(summary.run_id)  # as `foreman cancel` does from another process
    result = await asyncio.wait_for(running, 10)

    assert result.status is RunStatus.cancelled
    child = await store.get_run(child_run_id(result.run_id, "t2"))
    assert child.status is RunStatus.cancelled  # not left interrupted, to be resumed
    (cut,) = await store.list_calls(run_id=child.run_id, task_id="c2")
    assert cut.status.value == "cancelled"  # as the parent's own calls: stopped on purpose


async def test_a_nested_run_spends_within_its_parents_budget_and_resumes_under_a_raised_one(
    store,
) -> None:
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store)
    top.budget = Budget(max_calls=4)  # t1, then 3 for the nested run: plan, c1, c2
    stopped = await top.run("Write and publish", plan=TOP_PLAN)

    child_id = child_run_id(stopped.run_id, "t2")
    assert stopped.status is RunStatus.over_budget
    assert (await store.get_run(child_id)).status is RunStatus.over_budget
    assert stopped.calls == 4  # the parent's books: its call and the nested run's three
    assert "t2" not in stopped.tasks  # stopped unfinished: it runs on resume

    done = await top.resume(stopped.run_id, budget=Budget(max_calls=20))
    assert done.status is RunStatus.succeeded
    assert done.tasks["t2"].output == "published"
    assert [len(worker_requests(model, f"do {t}")) for t in ("t1", "c1", "c2")] == [1, 1, 1]
    assert done.calls == 1 + 4 + 1  # t1; the nested run's plan, c1, c2, synthesis; synthesis


async def test_a_small_raise_lets_the_nested_run_go_on_rather_than_fail_its_task(store) -> None:
    """The nested run's earlier calls counted twice on resume (once in the parent's total,
    once in its own share of it): raised from 4 to 5 calls, it was refused at once, its
    task failed and the parent ended `partial`, never to be resumed."""
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store)
    top.budget = Budget(max_calls=4)  # t1, then the nested run's plan, c1, c2
    stopped = await top.run("Write and publish", plan=TOP_PLAN)
    assert stopped.status is RunStatus.over_budget

    again = await top.resume(stopped.run_id, budget=Budget(max_calls=5))  # its synthesis
    child = await store.get_run(child_run_id(stopped.run_id, "t2"))
    assert child.status is RunStatus.succeeded and again.tasks["t2"].output == "published"
    assert again.status is RunStatus.over_budget and again.calls == 5  # not the parent's own
    done = await top.resume(stopped.run_id, budget=Budget(max_calls=6))
    assert done.status is RunStatus.succeeded and done.calls == 6


async def test_a_parents_cancel_at_its_limit_cuts_the_nested_runs_calls_too(store) -> None:
    """Under on_limit="cancel", the parent's own call reaching its limit cancels the calls
    running in its nested run, as its own (one was left to run on and answer), and the
    nested run ends `over_budget`, resumable, not `interrupted`."""
    latencies = {"do c1": 5.0, "do t1": 0.1}
    model = ScriptedModel(
        Script(CHILD_PLAN, synthesis="published"), latency=latency_by_instructions(latencies)
    )
    top = teams(model, store)
    top.budget = Budget(max_calls=3, on_limit="cancel")  # t1, the nested plan, c1: then t1 ends
    both = plan_of(task("t1", "researcher"), task("t2", "review"))
    stopped = await asyncio.wait_for(top.run("Write and review", plan=both), 4)

    assert stopped.status is RunStatus.over_budget
    child = await store.get_run(child_run_id(stopped.run_id, "t2"))
    assert child.status is RunStatus.over_budget, child.error
    (c1,) = await store.list_calls(run_id=child.run_id, task_id="c1")
    assert c1.status.value == "cancelled"
    latencies["do c1"] = 0.0  # answers at once now
    done = await top.resume(stopped.run_id, budget=Budget(max_calls=20))
    assert done.status is RunStatus.succeeded and done.tasks["t2"].output == "published"


async def test_nested_runs_side_by_side_share_their_parents_budget_as_they_spend(
    store,
) -> None:
    """Each nested run counts on its parent's meter live: two running at once cannot each
    spend all that was left when they started (4 calls each, 6 allowed in all)."""
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published"))
    top = teams(model, store)
    top.budget = Budget(max_calls=6)
    both = plan_of(task("t1", "review"), task("t2", "review"))
    stopped = await top.run("Review twice", plan=both)

    assert stopped.status is RunStatus.over_budget
    assert stopped.error == "budget exceeded: calls 6 >= max_calls 6"
    assert stopped.calls == 6 == len(model.requests)  # not 8: no call past the limit
    books = Books.of(await store.list_calls(run_id=stopped.run_id, descendants=True))
    assert books.calls == 6


async def test_resume_under_a_cost_limit_refuses_a_model_without_price_in_a_nested_run(
    store, monkeypatch
) -> None:
    """A nested run that spent on a model without a price (a replay on it, say) leaves a
    cost its parent's limit cannot count: resuming the parent under a cost limit says so,
    as it does for the parent's own calls, instead of counting that spending as $0."""
    monkeypatch.setenv("FOREMAN_PRICES", '{"priced": [1000, 2000]}')
    models = {
        name: ScriptedModel(Script(CHILD_PLAN, synthesis="published"), name=name)
        for name in ("priced", "zz")
    }
    child = Orchestrator([worker("checker"), worker("publisher")], model="priced", models=models)
    review = TeamWorker(name="review", description="Reviews.", team=child)
    top = Orchestrator(
        [worker("researcher"), review],
        model="priced",
        models=models,
        store=store,
        budget=Budget(max_calls=3, max_cost_usd=100.0),  # stops before c2
    )
    stopped = await top.run("Write and publish", plan=TOP_PLAN)
    assert stopped.status is RunStatus.over_budget
    fixer = Orchestrator([worker("checker")], model="priced", models=models, store=store)
    nested = child_run_id(stopped.run_id, "t2")
    await fixer.replay(nested, "c1", model="zz")  # a replay checks no budget
    with pytest.raises(ConfigError, match="zz has none"):
        await top.resume(stopped.run_id)


async def test_a_parents_validator_and_router_fallback_hold_only_where_the_team_has_them(
    store,
) -> None:
    """A planned team ran with its parent's settings, whose validator and router fallback
    name the parent's workers: every nested task failed ("No worker named 'researcher'")."""

    class TwoSteps:
        def workers(self):
            return [worker("checker"), worker("publisher")]

        def plan_for(self, request):
            return CHILD_PLAN

    approve = '{"approved": true, "reasons": []}'
    model = ScriptedModel(Script(CHILD_PLAN, synthesis="published", review=approve))
    review = TeamWorker(name="review", description="Reviews.", team=TwoSteps())
    top = Orchestrator(
        [worker("researcher"), review],
        model=model,
        store=store,
        validator="researcher",
        router="llm",
        router_fallback="researcher",
    )
    result = await top.run("Write and publish", plan=TOP_PLAN)
    assert result.tasks["t2"].succeeded, result.tasks["t2"].error


def test_a_cost_limit_needs_the_prices_of_its_teams_models_at_once(tmp_path, monkeypatch) -> None:
    """A team on a model without a price spent unseen under its parent's cost limit (the
    run even `succeeded`); the parent's own workers' models were the only ones checked."""
    monkeypatch.setenv("FOREMAN_PRICES", '{"priced": [1000, 2000]}')
    models = {name: ScriptedModel(Script(CHILD_PLAN), name=name) for name in ("priced", "zz")}
    limit = Budget(max_cost_usd=0.5)
    child = Orchestrator([worker("checker"), worker("publisher")], model="zz", models=models)
    review = TeamWorker(name="review", description="Reviews.", team=child)
    with pytest.raises(ConfigError, match="zz has none"):
        Orchestrator([worker("researcher"), review], model="priced", models=models, budget=limit)

    team_file = tmp_path / "review.yaml"  # a team file's workers, on their own model
    team_file.write_text(
        "workers:\n  - name: checker\n    description: Checks.\n    model: zz\n"
        "    system_prompt: Check.\n"
    )
    top_file = tmp_path / "top.yaml"
    top_file.write_text(
        "workers:\n  - name: review\n    description: Reviews.\n    team: review.yaml\n"
    )
    with pytest.raises(ConfigError, match="zz has none"):
        Orchestrator(load_team(top_file), model="priced", models=models, budget=limit)


async def test_a_partial_nested_run_answers_with_lowered_confidence_naming_what_is_missing(
    store,
) -> None:
    model = ScriptedModel(Script(CHILD_PLAN, tasks={"do c1": ModelError("no checker")}))
    top = teams(model, store)  # the checker's failure is not transient: it is skipped
    result = await top.run("Write and publish", plan=TOP_PLAN)

    t2 = result.tasks["t2"]
    child_id = child_run_id(result.run_id, "t2")
    assert (await store.get_run(child_id)).status is RunStatus.partial
    assert t2.status is TaskStatus.succeeded and t2.output.startswith("FINAL")
    assert t2.unreviewed == f"nested run {child_id} is partial: c1 did not succeed"
    assert result.confidence["t2"] < 1.0


THREE_LEVELS = plan_of(task("t1", "researcher"), task("t2", "mid", "t1"))


def three_levels(store) -> tuple[Orchestrator, Orchestrator, asyncio.Event]:
    """The top (``THREE_LEVELS``), its team ``mid`` (checker, then the team ``leafteam``)
    and the leaf (publisher), all in ``store``. The leaf's call takes 30 s; ``started`` is
    set as it begins. The journals poll for a cancel every 0.1 s."""
    mid_plan = plan_of(task("m1", "checker"), task("m2", "leafteam", "m1"))
    started = asyncio.Event()

    def latency(request) -> float:
        if "do l1" not in request.messages[0].content:
            return 0.0
        started.set()
        return 30.0

    model = ScriptedModel(Script([mid_plan, plan_of(task("l1", "publisher"))]), latency=latency)
    leaf = Orchestrator([worker("publisher")], model=model)
    leafteam = TeamWorker(name="leafteam", description="Publishes.", team=leaf)
    mid = Orchestrator([worker("checker"), leafteam], model=model, store=store, lease_seconds=0.3)
    team = TeamWorker(name="mid", description="Checks.", team=mid)
    top = Orchestrator([worker("researcher"), team], model=model, store=store, lease_seconds=0.3)
    return top, mid, started


async def test_cancelling_the_top_cancels_every_run_below_it_three_levels_down(store) -> None:
    top, _, started = three_levels(store)
    running = asyncio.create_task(top.run("go", plan=THREE_LEVELS))
    await asyncio.wait_for(started.wait(), 10)
    [summary] = [run for run in await store.list_runs() if run.parent_run_id is None]
    await store.cancel_run(summary.run_id)
    result = await asyncio.wait_for(running, 10)

    middle = child_run_id(result.run_id, "t2")
    bottom = child_run_id(middle, "m2")
    statuses = [(await store.get_run(run_id)).status for run_id in (result.run_id, middle, bottom)]
    assert statuses == [RunStatus.cancelled] * 3  # none left interrupted, to be resumed
    (cut,) = await store.list_calls(run_id=bottom, task_id="l1")
    assert cut.status.value == "cancelled"


async def test_a_cancel_asked_of_a_run_that_has_ended_cancels_nothing_below_it_later(
    store,
) -> None:
    """`foreman cancel` of a top run that was already interrupted ends it on the spot; a
    nested run resumed on its own and Ctrl-C'd afterwards stays resumable (interrupted)."""
    top, mid, started = three_levels(store)

    async def interrupted(job) -> None:
        await asyncio.wait_for(started.wait(), 10)
        job.cancel()  # a Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await job
        started.clear()

    await interrupted(asyncio.create_task(top.run("go", plan=THREE_LEVELS)))
    [summary] = [run for run in await store.list_runs() if run.parent_run_id is None]
    await store.cancel_run(summary.run_id)  # ended on the spot: it was not running
    middle = child_run_id(summary.run_id, "t2")
    await interrupted(asyncio.create_task(mid.resume(middle)))

    bottom = child_run_id(middle, "m2")
    statuses = [(await store.get_run(run_id)).status for run_id in (middle, bottom)]
    assert statuses == [RunStatus.interrupted, RunStatus.interrupted]
