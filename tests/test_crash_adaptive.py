"""kill -9 in the middle of the adaptive modes, then resume: no finished task runs twice.

Each run is a real ``foreman run --json`` process on a scripted model (tests/scripted_cli.py)
and a SQLite store: a delegating run (``--mode delegate``) killed once a delegation of an
earlier turn and one of the current turn finished while another is in flight; a replanning
run (``--replan always``) killed once a revision added tasks and one of them finished; a
for-each run killed with some items done. The test waits on the run's events and its
stored checkpoints (never on time) to know when to kill, then ``foreman resume`` must end
the run ``succeeded`` with the right answer, with every task that finished before the kill
executed exactly once in all (the scripted model logs each worker call *before* it
answers, so even a call the kill cut short is counted), the cut call's ledger row
``interrupted``, and the run's books equal to its ledger as read from the store.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest

import processes
from foreman.events import EVENT_ADAPTER
from foreman.ledger.books import Books
from foreman.ledger.records import CallStatus
from foreman.store import SQLiteStore
from test_durable_cli import Foreman, events_of

SLOW = 60  # seconds: a call the test kills the process in the middle of


def kill_once(foreman: Foreman, args: list[str], ready: set[tuple[str, str]], cut: str) -> str:
    """Start ``foreman run --json ARGS``; once every (event type, task id) of ``ready`` was
    emitted, the tasks among them that finished are checkpointed and the worker call whose
    log line is ``cut`` is under way, SIGKILL it. Returns the run id."""
    process = processes.spawn(foreman.command("run", "--json", *args))
    run_id, seen = None, set()
    for line in process.lines(timeout=60):
        event = EVENT_ADAPTER.validate_json(line)
        run_id = event.run_id
        seen.add((event.type, getattr(event, "task_id", None)))
        if ready <= seen:
            break
    assert run_id is not None and ready <= seen, process.stderr()
    finished = {task for kind, task in ready if kind == "task_finished"}
    processes.wait_until(
        lambda: (
            cut in foreman.log.read_text().splitlines() and foreman.checkpointed(run_id) >= finished
        ),
        timeout=30,
        what=f"the checkpoints of {sorted(finished)} and the call {cut!r}",
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return run_id


def resume(foreman: Foreman, run_id: str) -> list:
    """``foreman resume RUN --json``, which must succeed; its events."""
    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = events_of(resumed.stdout)
    assert events[0].type == "run_started" and events[0].resumed
    assert events[-1].type == "run_finished"
    assert events[-1].result.status.value == "succeeded", events[-1].result.error
    return events


def stored(foreman: Foreman, run_id: str, cut_task: str) -> dict:
    """The run as ``foreman show --json`` gives it, after checking from the store that its
    books equal its ledger and that ``cut_task``'s calls were the one the kill cut short,
    then the one that finished it."""

    async def read() -> None:
        store = SQLiteStore(foreman.db)
        try:
            record = await store.get_run(run_id)
            calls = await store.list_calls(run_id=run_id, descendants=True)
        finally:
            await store.aclose()
        books = Books.of(calls)
        assert (record.usage, record.calls) == (books.usage, books.calls)
        assert record.cost_usd == pytest.approx(books.cost_usd)
        assert [c.status for c in calls if c.task_id == cut_task] == [
            CallStatus.interrupted,
            CallStatus.ok,
        ]
        others = [c.status for c in calls if c.task_id not in (None, cut_task)]
        assert others == [CallStatus.ok] * len(others)

    asyncio.run(read())
    shown = foreman.run("show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def delegate(worker: str, instructions: str, *inputs: str) -> dict:
    return {"worker": worker, "instructions": instructions, "inputs": list(inputs)}


TURNS = [
    [delegate("researcher", "do a")],
    [delegate("researcher", "do b", "d1-1"), delegate("analyst", "do c", "d1-1")],
    [delegate("writer", "do d", "d2-1", "d2-2")],
    "the answer",
]


def test_kill_9_mid_delegation_then_resume_never_repeats_a_settled_delegation(
    tmp_path: Path,
) -> None:
    foreman = Foreman(tmp_path, {"turns": TURNS, "latency": {"do c": SLOW}})
    ready = {("task_finished", "d1-1"), ("task_finished", "d2-1"), ("task_started", "d2-2")}
    run_id = kill_once(foreman, ["--mode", "delegate", "go"], ready, cut="do c")
    assert foreman.calls() == Counter({"a": 1, "b": 1, "c": 1})
    assert foreman.checkpointed(run_id) == {"d1-1", "d2-1"}

    foreman.set_spec({"turns": TURNS})  # c is fast now
    events = resume(foreman, run_id)
    assert events[-1].result.answer == "the answer"
    # The delegations that finished ran once in all; d2-2 again, it never finished.
    assert foreman.calls() == Counter({"a": 1, "b": 1, "c": 2, "d": 1})
    turns = [e for e in events if e.type == "orchestrator_turn"]
    assert [(t.turn, [d.id for d in t.delegations], t.final) for t in turns] == [
        (3, ["d3-1"], False),
        (4, [], True),
    ]
    shown = stored(foreman, run_id, cut_task="d2-2")
    assert shown["status"] == "succeeded"
    assert sorted(task["task_id"] for task in shown["tasks"]) == ["d1-1", "d2-1", "d2-2", "d3-1"]


def t(tid: str, *deps: str) -> dict:
    return {"id": tid, "worker": "researcher", "instructions": f"do {tid}", "depends_on": [*deps]}


def test_kill_9_after_a_revision_then_resume_goes_on_from_the_latest_plan(
    tmp_path: Path,
) -> None:
    first = {"tasks": [t("t1")]}
    revision = {"reason": "t1 found two parts", "add": [t("t2", "t1"), t("t3", "t1")]}
    spec = {"plan": first, "revisions": [revision], "latency": {"do t3": SLOW}}
    foreman = Foreman(tmp_path, spec)
    ready = {("task_finished", "t2"), ("task_started", "t3")}
    args = ["--replan", "always", "--max-replans", "5", "go"]
    run_id = kill_once(foreman, args, ready, cut="do t3")
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 1})
    assert foreman.checkpointed(run_id) == {"t1", "t2"}

    # A resumed process's scripted planner would add t2 and t3 again: it revises nothing.
    foreman.set_spec({"plan": first})
    events = resume(foreman, run_id)
    [ready_plan] = [e for e in events if e.type == "plan_ready"]
    assert [task.id for task in ready_plan.plan.tasks] == ["t1", "t2", "t3"]  # version 2
    assert events[-1].result.answer == "FINAL"
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 2})
    shown = stored(foreman, run_id, cut_task="t3")
    assert shown["status"] == "succeeded"
    assert [v["changes"]["added"] for v in shown["plan_versions"]] == [[], ["t2", "t3"]]


TEAM = """\
workers:
  - {name: lister, description: Lists files., system_prompt: You list files.}
  - {name: researcher, description: Reads one file., system_prompt: You read.}
  - {name: writer, description: Writes it up., system_prompt: You write.}
"""

FAN = {
    "tasks": [
        {"id": "t1", "worker": "lister", "instructions": "do t1", "depends_on": []},
        {
            "id": "t2",
            "worker": "researcher",
            "instructions": "do t2",
            "depends_on": ["t1"],
            "for_each": "t1.files",
        },
        {"id": "t3", "worker": "writer", "instructions": "do t3", "depends_on": ["t2"]},
    ]
}


def test_kill_9_with_some_for_each_items_done_then_resume_runs_only_the_rest(
    tmp_path: Path,
) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    spec = {
        "plan": FAN,
        "lists": {"lister": "files"},
        "outputs": {"do t1": {"files": ["a", "b", "c"]}},
    }
    foreman = Foreman(tmp_path, {**spec, "latency": {"do t2 c": SLOW}})
    ready = {("task_finished", "t2.1"), ("task_finished", "t2.2"), ("task_started", "t2.3")}
    run_id = kill_once(foreman, ["--team", str(team), "go"], ready, cut="do t2 c")
    assert foreman.calls() == Counter({"t1": 1, "t2 a": 1, "t2 b": 1, "t2 c": 1})
    assert foreman.checkpointed(run_id) == {"t1", "t2.1", "t2.2"}

    foreman.set_spec(spec)  # item c is fast now
    events = resume(foreman, run_id)
    result = events[-1].result
    assert result.answer == "FINAL"
    assert result.tasks["t2"].output == ["out:do t2 a", "out:do t2 b", "out:do t2 c"]
    assert foreman.calls() == Counter({"t1": 1, "t2 a": 1, "t2 b": 1, "t2 c": 2, "t3": 1})
    shown = stored(foreman, run_id, cut_task="t2.3")
    assert shown["status"] == "succeeded"
