"""Replanning: policies, revisions applied while tasks run, bounds, budget, the ledger."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from foreman import Budget, Orchestrator
from foreman.engine.replan_prompts import (
    HINT_SUFFIX,
    RESULT_CHARS,
    RESULTS_CHARS,
    bounded_entries,
    replan_hint,
    revision_request,
)
from foreman.errors import ConfigError
from foreman.events import EVENT_ADAPTER, PlanRejected, PlanRevised, TaskFinished, TaskStarted
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult, TaskStatus
from foreman.store.memory import MemoryStore
from helpers import collect, index_of, is_synthesis, of_type, plan_of, task, worker
from replan_helpers import (
    KEEP,
    add,
    latency,
    model,
    orchestrator,
    replan_requests,
    states,
    worker_calls,
)

TWO = plan_of(task("t1"), task("t2", "writer", "t1"))


def hinted(text: str) -> str:
    return f"found things\nREPLAN: {text}"


# --- hints --------------------------------------------------------------------------------


def test_a_hint_is_a_replan_line_of_text_or_a_replan_field_of_a_structured_answer() -> None:
    assert replan_hint("all good") is None
    assert replan_hint("done.\nREPLAN: split the work in three") == "split the work in three"
    assert replan_hint("  replan :  later  \nmore") == "later"
    assert replan_hint({"files": [], "replan": "four modules"}) == "four modules"
    assert replan_hint({"files": [], "replan": None}) is None
    assert replan_hint({"replan": "  "}) is None
    assert replan_hint({"replan": True}) == "the worker asked for a replan"
    assert replan_hint(None) is None


# --- policies ---------------------------------------------------------------------------


async def test_never_asks_no_revision_even_when_a_worker_hints() -> None:
    scripted = model(TWO, lambda _: add(("t3", "writer", [])), tasks={"do t1": hinted("more")})
    result = await orchestrator(scripted, replan="never").run("req")
    assert result.status is RunStatus.succeeded
    assert replan_requests(scripted) == []
    assert set(result.tasks) == {"t1", "t2"}
    assert result.tasks["t1"].replan is None  # not replanning: hints are not read


async def test_on_hint_revises_only_after_the_tasks_that_ask() -> None:
    def revise(message: dict[str, Any]) -> dict[str, Any]:
        assert message["just_finished"] == ["t1"]
        return add(("t3", "coder", ["t1"]), reason="t1 found more")

    scripted = model(TWO, revise, tasks={"do t1": hinted("there is more to do")})
    store = MemoryStore()
    result = await orchestrator(scripted, replan="on-hint", store=store).run("req")

    assert result.status is RunStatus.succeeded
    assert len(replan_requests(scripted)) == 1  # t2 and t3 gave no hint
    assert set(result.tasks) == {"t1", "t2", "t3"}
    assert result.tasks["t1"].replan == "there is more to do"
    assert [task.id for task in result.plan.tasks] == ["t1", "t2", "t3"]
    versions = await store.list_plans(result.run_id)
    assert [(v.version, v.reason, v.changes.added) for v in versions] == [
        (1, None, []),
        (2, "t1 found more", ["t3"]),
    ]
    assert (await store.get_run(result.run_id)).plan == result.plan


async def test_always_revises_after_every_settled_task_and_may_keep_the_plan() -> None:
    seen: list[list[str]] = []

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message["just_finished"])
        return KEEP

    store = MemoryStore()
    scripted = model(TWO, revise)
    result = await orchestrator(scripted, store=store).run("req")
    assert result.status is RunStatus.succeeded
    assert seen == [["t1"], ["t2"]]
    assert len(await store.list_plans(result.run_id)) == 1  # keeping is not a version


async def test_tasks_that_settle_during_a_revision_go_together_into_the_next_one() -> None:
    plan = plan_of(task("t1"), task("t2"), task("t3"))
    seen: list[list[str]] = []

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(sorted(message["just_finished"]))
        return KEEP

    # The first revision is slow; t2 and t3 end meanwhile.
    slow_first = latency({"do t2": 0.05, "do t3": 0.05}, lambda: 0.3 if not seen else 0.0)
    scripted = model(plan, revise, latency=slow_first)
    await orchestrator(scripted).run("req")
    assert seen == [["t1"], ["t2", "t3"]]


async def test_a_revision_changes_a_pending_dependant_before_it_starts() -> None:
    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if states(message)["t2"] != "pending":
            return KEEP
        change = {"id": "t2", "worker": "coder", "instructions": "do t2 better"}
        return {
            "reason": "t1 said so",
            "add": [],
            "change": [change | {"depends_on": ["t1"]}],
            "drop": [],
        }

    scripted = model(TWO, revise, tasks={"do t1": hinted("t2 should be better")})
    result = await orchestrator(scripted, replan="on-hint").run("req")
    assert worker_calls(scripted) == ["do t1", "do t2 better"]
    assert result.tasks["t2"].worker == "coder"


async def test_dropped_tasks_never_run() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t2"))

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        return {"reason": "not needed", "add": [], "change": [], "drop": ["t3", "t2"]}

    scripted = model(plan, revise, tasks={"do t1": hinted("nothing more is needed")})
    store = MemoryStore()
    result = await orchestrator(scripted, replan="on-hint", store=store).run("req")
    assert worker_calls(scripted) == ["do t1"]
    assert result.status is RunStatus.succeeded
    assert [t.id for t in result.plan.tasks] == ["t1"]
    assert (await store.list_plans(result.run_id))[-1].changes.dropped == ["t3", "t2"]


async def test_a_revision_keeps_the_plans_answer_task() -> None:
    """A pattern's plan names its answer (the last stage's output, no synthesis): a
    revision that adds a task keeps it, so the answer does not turn into a synthesis."""
    plan = Plan(tasks=[task("t1"), task("t2", "writer", "t1")], answer_task="t2")

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if "t3" in json.dumps(message["plan"]):
            return KEEP
        return add(("t3", "researcher", ["t1"]))

    scripted = model(plan, revise)
    store = MemoryStore()
    result = await orchestrator(scripted, store=store, assembly="synthesis").run("x", plan=plan)
    assert [t.id for t in result.plan.tasks] == ["t1", "t2", "t3"]
    assert result.answer == "out:do t2"  # the answer task's output, as without replanning
    assert not any(is_synthesis(request) for request in scripted.requests)
    assert (await store.get_run(result.run_id)).plan.answer_task == "t2"  # for a resume too


async def test_new_tasks_start_while_an_unrelated_branch_still_runs() -> None:
    plan = plan_of(task("t1"), task("slow"))

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if "t1" in message["just_finished"] and "t9" not in states(message):
            return add(("t9", "writer", ["t1"]))
        return KEEP

    scripted = model(plan, revise, latency=latency({"do slow": 0.3}))
    events = await collect(orchestrator(scripted).stream("req"))
    # t9 was added and started before the slow branch finished: no wait for a level
    assert index_of(events, TaskStarted, "t9") < index_of(events, TaskFinished, "slow")


# --- validation -------------------------------------------------------------------------


async def test_a_revision_that_cannot_apply_is_asked_again_with_its_errors() -> None:
    answers = [
        {
            "reason": "redo",
            "add": [],
            "change": [{"id": "t1", "worker": "coder", "instructions": "x", "depends_on": []}],
            "drop": [],
        },
        "not json at all",
        add(("t3", "writer", ["t1"])),
    ]
    asked: list[int] = []

    def revise(message: dict[str, Any]) -> Any:
        asked.append(1)
        return answers[len(asked) - 1]

    store = MemoryStore()
    scripted = model(TWO, revise, tasks={"do t1": hinted("more")})
    events: list[Any] = []
    result = await orchestrator(scripted, replan="on-hint", store=store).run(
        "req", on_event=events.append
    )
    rejected = of_type(events, PlanRejected)
    assert [e.attempt for e in rejected] == [1, 2]
    assert "cannot be changed: it is settled" in rejected[0].errors[0]
    assert "no JSON object" in rejected[1].errors[0]
    retry = replan_requests(scripted)[1]
    assert "cannot be changed" in retry.messages[-1].content  # the model saw its errors
    assert set(result.tasks) == {"t1", "t2", "t3"}
    calls = [c for c in await store.list_calls(run_id=result.run_id) if c.purpose == "replan"]
    assert [c.status for c in calls] == [CallStatus.error, CallStatus.error, CallStatus.ok]
    assert calls[0].error_type == "RevisionRejected"
    assert [c.attempt for c in calls] == [1, 2, 3]


async def test_revisions_are_validated_like_plans() -> None:
    bad = [
        add(("t3", "nobody", [])),  # unknown worker
        add(("t3", "writer", ["t7"])),  # unknown dependency
        add(("t2", "writer", [])),  # id already used
        {
            "reason": "cycle",
            "add": [
                {"id": "a", "worker": "writer", "instructions": "do a", "depends_on": ["b"]},
                {"id": "b", "worker": "writer", "instructions": "do b", "depends_on": ["a"]},
            ],
            "change": [],
            "drop": [],
        },
    ]
    for revision in bad:
        scripted = model(TWO, lambda _, r=revision: r, tasks={"do t1": hinted("more")})
        events: list[Any] = []
        result = await orchestrator(scripted, replan="on-hint", max_plan_retries=0).run(
            "req", on_event=events.append
        )
        assert of_type(events, PlanRejected), revision
        assert result.status is RunStatus.stalled  # no valid revision: replanning stops
        assert "no valid revision in 1 attempts" in result.error
        assert set(result.tasks) == {"t1"}  # t2 never started after the stall


async def test_the_plan_size_limit_holds_for_revisions() -> None:
    many = add(*[(f"n{i}", "writer", []) for i in range(8)])
    scripted = model(TWO, lambda _: many, tasks={"do t1": hinted("more")})
    events: list[Any] = []
    await orchestrator(scripted, replan="on-hint", max_tasks=8, max_plan_retries=0).run(
        "req", on_event=events.append
    )
    assert "the limit is 8" in of_type(events, PlanRejected)[0].errors[0]


# --- bounds -------------------------------------------------------------------------------


async def test_max_replans_bounds_the_revisions_of_a_run() -> None:
    counter = iter(range(3, 100))

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        n = next(counter)
        return add((f"t{n}", "writer", []))

    store = MemoryStore()
    scripted = model(TWO, revise)
    result = await orchestrator(scripted, max_replans=2, store=store).run("req")
    assert len(await store.list_plans(result.run_id)) == 3
    assert len(replan_requests(scripted)) == 2  # no call once the bound is reached
    assert result.status is RunStatus.succeeded


async def test_no_revision_once_the_budget_is_spent() -> None:
    # plan + t1 are 2 calls; the limit of 2 leaves none for the revision
    scripted = model(TWO, lambda _: add(("t3", "writer", [])))
    result = await orchestrator(scripted, budget=Budget(max_calls=2)).run("req")
    assert replan_requests(scripted) == []
    assert result.status is RunStatus.over_budget


async def test_revision_calls_are_in_the_ledger_with_purpose_replan() -> None:
    store = MemoryStore()
    scripted = model(TWO, lambda m: add(("t3", "writer", [])) if "t3" not in states(m) else KEEP)
    events: list[Any] = []
    result = await orchestrator(scripted, store=store).run("req", on_event=events.append)
    calls = [
        c
        for c in await store.list_calls(run_id=result.run_id, with_prompts=True)
        if c.purpose is CallPurpose.replan
    ]
    assert len(calls) == len(replan_requests(scripted)) == result.replan_attempts == 3
    assert result.attempts == result.calls  # every call of the run, revisions included
    assert all(c.parent == "replan" and c.task_id is None for c in calls)
    assert all(c.usage.total_tokens > 0 for c in calls)
    revised = of_type(events, PlanRevised)
    assert [(e.version, e.added) for e in revised] == [(2, ["t3"])]
    assert revised[0].usage == calls[0].usage
    assert EVENT_ADAPTER.validate_json(revised[0].model_dump_json()) == revised[0]
    assert "just_finished" in calls[0].prompt["messages"][0]["content"]


def test_policies_and_bounds_are_checked_when_configured() -> None:
    with pytest.raises(ConfigError, match="replan must be one of"):
        Orchestrator(replan="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_replans"):
        Orchestrator(max_replans=-1)
    settings = Orchestrator(replan="on-hint", max_replans=4).config
    assert (settings.replan, settings.max_replans) == ("on-hint", 4)
    assert (Orchestrator().config.replan, Orchestrator().config.max_replans) == ("never", 3)


class Findings(BaseModel):
    files: list[str]
    replan: str | None = None


async def test_a_structured_worker_asks_with_its_replan_field() -> None:
    team = [worker("scanner", output_schema=Findings), worker("writer")]
    plan = plan_of(task("t1", "scanner"), task("t2", "writer", "t1"))
    answers = {"do t1": '{"files": ["a.py", "b.py"], "replan": "two modules, split the work"}'}

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        assert message["results"][0]["replan"] == "two modules, split the work"
        return add(("t3", "writer", ["t1"]))

    scripted = model(plan, revise, tasks=answers)
    result = await Orchestrator(team, model=scripted, replan="on-hint", assembly="concat").run("q")
    assert result.tasks["t1"].replan == "two modules, split the work"
    assert set(result.tasks) == {"t1", "t2", "t3"}
    systems = {r.system for r in scripted.requests if "You are the" in (r.system or "")}
    # text workers are told how to ask; a structured one asks through its schema
    assert any(s.startswith("You are the writer") and HINT_SUFFIX in s for s in systems)
    assert all(HINT_SUFFIX not in s for s in systems if s.startswith("You are the scanner"))


def test_the_revision_prompt_is_bounded_and_shows_fresh_results_first() -> None:
    plan = plan_of(*(task(f"t{i}") for i in range(1, 13)))
    results = {
        f"t{i}": TaskResult(
            task_id=f"t{i}", worker="researcher", status=TaskStatus.succeeded, output="x" * 5000
        )
        for i in range(1, 13)
    }
    entries = bounded_entries(results, ["t12"])
    message = json.loads(revision_request("q", plan, {}, results, entries, ["t12"]))
    shown = message["results"]
    assert shown[0]["id"] == "t12"  # what just settled comes first
    assert shown[0]["output"].startswith("x" * RESULT_CHARS)
    assert shown[0]["output"].endswith(f"[... {5000 - RESULT_CHARS} more characters]")
    assert sum(len(r["output"]) for r in shown) < RESULTS_CHARS + 12 * 40
    assert len(shown) == 12  # every result is listed, the late ones cut short


class Files(BaseModel):
    files: list[str]


async def test_a_revision_may_add_a_task_that_runs_once_per_item() -> None:
    team = [worker("lister", output_schema=Files), worker("writer")]
    plan = plan_of(task("t1", "lister"))
    found = '{"files": ["a.py", "b.py", "c.py"]}'
    per_file = {
        "id": "t2",
        "worker": "writer",
        "instructions": "patch the file",
        "depends_on": ["t1"],
        "for_each": "t1.files",
    }

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if "t2" in states(message):
            assert next(t for t in message["plan"] if t["id"] == "t2")["for_each"] == "t1.files"
            return KEEP
        return {"reason": "one patch per file", "add": [per_file], "change": [], "drop": []}

    scripted = model(plan, revise, tasks={"do t1": found, "patch the file": "patched"})
    result = await Orchestrator(team, model=scripted, replan="always", assembly="concat").run("q")
    assert result.status is RunStatus.succeeded
    assert worker_calls(scripted).count("patch the file") == 3  # one per item, in parallel
    assert result.tasks["t2"].output == ["patched"] * 3
    schema = replan_requests(scripted)[0].output_schema
    assert "for_each" in schema["properties"]["add"]["items"]["properties"]


async def test_a_revision_may_add_a_task_over_a_list_that_settled_before_it() -> None:
    """t1's list settled earlier, with no revision; t0's hint then adds a for-each over it.
    The new task is expanded before anything starts (it used to start unexpanded, and
    fail with "the task changed after its items were known")."""
    team = [worker("lister", output_schema=Files), worker("writer"), worker("researcher")]
    plan = plan_of(task("t1", "lister"), task("t0", "researcher"))
    per_file = {
        "id": "t5",
        "worker": "writer",
        "instructions": "patch the file",
        "depends_on": ["t1"],
        "for_each": "t1.files",
    }

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if "t5" in json.dumps(message["plan"]):
            return KEEP
        return {"reason": "one patch per file", "add": [per_file], "change": [], "drop": []}

    tasks = {"do t1": '{"files": ["a.py", "b.py"]}', "do t0": hinted("patch them")}
    scripted = model(plan, revise, tasks=tasks, latency=latency({"do t0": 0.2}))
    result = await Orchestrator(team, model=scripted, replan="on-hint", assembly="concat").run(
        "q", plan=plan
    )
    assert result.status is RunStatus.succeeded
    assert result.tasks["t5"].output == ["out:patch the file"] * 2


async def test_an_expanded_for_each_task_is_running_to_a_revision() -> None:
    team = [worker("lister", output_schema=Files), worker("writer"), worker("researcher")]
    per_file = task("t2", "writer", "t1", for_each="t1.files", instructions="patch the file")
    plan = plan_of(task("t1", "lister"), per_file, task("t3", "researcher"))
    seen: list[dict[str, str]] = []

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(states(message))
        return KEEP

    scripted = model(
        plan,
        revise,
        tasks={"do t1": '{"files": ["a.py", "b.py"]}', "patch the file": "patched"},
        latency=latency({"patch the file": 0.2}),
    )
    await Orchestrator(team, model=scripted, replan="always", assembly="concat").run("q")
    # after t3 or the first item, t2 has expanded: it runs (as its items' join)
    assert any(s["t2"] == "running" for s in seen)
    assert all(s["t2"] != "pending" or s["t1"] != "succeeded" for s in seen)


async def test_with_a_context_budget_older_results_reach_the_reviser_as_summaries() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t2"))
    long = {f"do t{i}": f"t{i} says " + "lorem ipsum " * 400 for i in (1, 2)}
    long["do t3"] = "t3 says: done"
    seen: list[dict[str, Any]] = []

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return KEEP

    store = MemoryStore()
    scripted = model(plan, revise, tasks=long)
    events: list[Any] = []
    result = await orchestrator(scripted, store=store, context_budget=1500).run(
        "q", on_event=events.append
    )
    assert result.status is RunStatus.succeeded
    last = seen[-1]["results"]  # after t3: t1 and t2 summarised, t3 (just settled) whole
    summaries = last[:-1]
    assert {ids for s in summaries for ids in s["summary_of"]} == {"t1", "t2"}
    assert all(s["summary"] == "SUMMARY of the older results" for s in summaries)
    assert last[-1]["id"] == "t3" and last[-1]["output"] == long["do t3"]
    compacted = [e for e in events if e.type == "context_compacted" and e.purpose == "replan"]
    assert compacted and compacted[-1].compacted == ["t1", "t2"]
    calls = await store.list_calls(run_id=result.run_id)
    assert any(c.purpose is CallPurpose.compaction for c in calls)
    assert result.tasks["t2"].input.count("lorem") == 400  # workers still get full outputs
