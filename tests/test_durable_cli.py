"""Durable runs across real processes: SIGKILL mid-run then resume, and approvals given
from another process. Each ``foreman`` here is its own Python process (tests/scripted_cli.py)."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

import processes
from cli_runs import ScriptedCli, plan
from foreman.events import EVENT_ADAPTER
from helpers import HIGH_RISK_TEAM


class Foreman(ScriptedCli):
    """Runs ``foreman`` subcommands in fresh processes against one database and spec."""

    def checkpointed(self, run_id: str) -> set[str]:
        """Task ids whose checkpoint is committed, read as any other process would."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT task_id FROM tasks WHERE run_id = ?", (run_id,))
            return {row[0] for row in rows}


def events_of(output: str) -> list:
    return [EVENT_ADAPTER.validate_json(line) for line in output.splitlines() if line.strip()]


DAG = plan(
    ("t1", "researcher", []),
    ("t2", "researcher", ["t1"]),
    ("t3", "analyst", ["t1"]),
    ("t4", "writer", ["t2", "t3"]),
)


def start_slow_run(foreman: Foreman) -> tuple[processes.Child, str]:
    """Start `foreman run` in its own process; return once t1 and t2 are checkpointed and
    t3's (60 s) model call is under way."""
    process = processes.spawn(foreman.command("run", "--json", "write it"))
    run_id, seen = None, set()
    for line in process.lines(timeout=60):  # read events until t2 is done and t3 is mid-call
        event = EVENT_ADAPTER.validate_json(line)
        run_id = event.run_id
        seen.add((event.type, getattr(event, "task_id", None)))
        if {("task_finished", "t2"), ("task_started", "t3")} <= seen:
            break
    assert {("task_finished", "t2"), ("task_started", "t3")} <= seen, process.stderr()
    processes.wait_until(  # t2's checkpoint is committed and t3's call live
        lambda: "t3" in foreman.calls() and foreman.checkpointed(run_id) >= {"t1", "t2"},
        timeout=30,
        what="t2's checkpoint and t3's call",
    )
    return process, run_id


def test_sigkill_mid_run_then_resume_never_repeats_finished_tasks(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": DAG, "latency": {"do t3": 60}})
    process, run_id = start_slow_run(foreman)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 1})

    shown = foreman.run("show", run_id)
    assert shown.returncode == 0 and "crashed" in shown.stdout  # the process died mid-run
    listed = foreman.run("runs")
    assert "crashed" in listed.stdout and "running" not in listed.stdout

    foreman.set_spec({"plan": DAG})  # t3 is fast now
    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = events_of(resumed.stdout)
    assert events[0].type == "run_started" and events[0].resumed
    assert events[-1].result.status.value == "succeeded"
    assert events[-1].result.answer == "FINAL"
    # Finished tasks ran once in all; t3 ran again because it never finished; t4 once.
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 2, "t4": 1})

    again = foreman.run("resume", run_id)
    assert again.returncode == 1 and "already finished" in again.stderr


def test_ctrl_c_marks_the_run_interrupted_and_resumable(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": DAG, "latency": {"do t3": 60}})
    process, run_id = start_slow_run(foreman)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert f"foreman resume {run_id}" in stderr

    listed = foreman.run("runs", columns=80)  # a standard terminal never cuts the run id
    assert run_id in listed.stdout and "interrupted" in listed.stdout
    with sqlite3.connect(foreman.db) as db:  # what planning, t1 and t2 cost is on record
        spent = db.execute("SELECT input_tokens FROM runs WHERE run_id = ?", (run_id,))
        assert spent.fetchone()[0] > 0

    foreman.set_spec({"plan": DAG})
    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 2, "t4": 1})


def test_a_run_cannot_be_executed_by_two_processes_at_once(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": DAG, "latency": {"do t3": 60}})
    process, run_id = start_slow_run(foreman)
    try:
        second = foreman.run("resume", run_id)
        assert second.returncode == 1
        assert f"being executed by process {process.pid}" in second.stderr
    finally:
        process.kill()
        process.wait(timeout=30)
    assert "t4" not in foreman.calls()  # the second process ran nothing


def approval_setup(tmp_path: Path) -> tuple[Foreman, str]:
    team = tmp_path / "team.yaml"
    team.write_text(HIGH_RISK_TEAM)
    dag = plan(
        ("t1", "researcher", []),
        ("t2", "deployer", ["t1"]),
        ("t3", "writer", []),
        ("t4", "writer", ["t2", "t3"]),
    )
    foreman = Foreman(tmp_path, {"plan": dag})
    first = foreman.run("run", "--json", "--team", str(team), "ship it")
    assert first.returncode == 5, first.stderr  # waiting for approval
    events = events_of(first.stdout)
    result = events[-1].result
    assert result.status.value == "waiting_approval"
    assert result.tasks["t2"].status.value == "waiting" and "t4" not in result.tasks
    assert [e.task_id for e in events if e.type == "approval_requested"] == ["t2"]
    assert foreman.calls() == Counter({"t1": 1, "t3": 1})  # the others went on meanwhile
    return foreman, result.run_id


def test_approval_from_another_process_then_resume(tmp_path: Path) -> None:
    foreman, run_id = approval_setup(tmp_path)

    listed = foreman.run("approvals")
    assert listed.returncode == 0 and run_id in listed.stdout and "deployer" in listed.stdout

    needless = foreman.run("approve", run_id, "t1")
    assert needless.returncode == 1 and "not waiting for approval" in needless.stderr

    approved = foreman.run("approve", run_id, "t2", "--note", "looks safe")
    assert approved.returncode == 0 and "approved" in approved.stdout

    again = foreman.run("approve", run_id, "t2")
    assert again.returncode == 1 and "already approved" in again.stderr

    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert events_of(resumed.stdout)[-1].result.status.value == "succeeded"
    assert foreman.calls() == Counter({"t1": 1, "t2": 1, "t3": 1, "t4": 1})


def test_rejection_follows_the_failure_policy_and_is_recorded(tmp_path: Path) -> None:
    foreman, run_id = approval_setup(tmp_path)

    rejected = foreman.run("reject", run_id, "t2", "--reason", "not on a Friday")
    assert rejected.returncode == 0

    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 3, resumed.stderr  # partial: t2 skipped by policy
    result = events_of(resumed.stdout)[-1].result
    assert result.tasks["t2"].status.value == "failed"
    assert "not on a Friday" in result.tasks["t2"].error
    assert result.tasks["t4"].succeeded  # ran with an explicit missing-input marker
    assert "t2" not in foreman.calls()  # a rejected task never reaches its model

    shown = foreman.run("show", run_id)
    assert "not on a Friday" in shown.stdout


@pytest.mark.parametrize(
    "command", [["resume", "nope"], ["show", "nope"], ["replay", "nope", "t1"]]
)
def test_unknown_run_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    assert foreman.run("run", "--json", "something").returncode == 0  # a store with a run
    result = foreman.run(*command)
    assert result.returncode == 1
    assert "No run 'nope'" in result.stderr


def test_replay_reruns_one_task_with_its_recorded_input(tmp_path: Path) -> None:
    dag = plan(("t1", "researcher", []), ("t2", "writer", ["t1"]))
    foreman = Foreman(tmp_path, {"plan": dag})
    first = foreman.run("run", "--json", "write it")
    assert first.returncode == 0
    run_id = events_of(first.stdout)[-1].run_id

    replayed = foreman.run("replay", run_id, "t2")
    assert replayed.returncode == 0, replayed.stderr
    assert "out:do t2" in replayed.stdout
    assert foreman.calls() == Counter({"t1": 1, "t2": 2})  # t1 untouched

    shown = foreman.run("show", run_id)
    assert "succeeded" in shown.stdout  # the stored run did not change


def test_corrupted_database_is_a_clear_error(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    foreman.db.write_bytes(b"this is not sqlite" * 100)
    result = foreman.run("runs")
    assert result.returncode == 1
    assert "corrupted" in result.stderr


def test_a_folder_given_as_the_store_is_one_clear_line(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    foreman.db.mkdir()
    for command in (["runs"], ["show", "last"], ["run", "hello"]):
        result = foreman.run(*command)
        assert result.returncode == 1, command
        assert f"{foreman.db} is a folder, not a run store" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("table", ["users", "runs"])  # a table of foreman's name too
def test_another_programs_database_is_refused_and_left_as_it_was(
    tmp_path: Path, table: str
) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    other = sqlite3.connect(foreman.db)
    other.execute(f"CREATE TABLE {table} (id INTEGER, name TEXT)")
    other.execute(f"INSERT INTO {table} VALUES (1, 'alice')")
    other.commit()
    other.close()
    before = foreman.db.read_bytes()
    for command in (["runs"], ["doctor"], ["stats"], ["run", "hello"]):
        result = foreman.run(*command)
        assert result.returncode == 1, command
        assert "is not a foreman run store" in result.stderr and table in result.stderr
        assert "Traceback" not in result.stderr
    assert foreman.db.read_bytes() == before  # no tables added, not switched to WAL
    assert not Path(f"{foreman.db}-wal").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["show", "r1"],
        ["approve", "r1", "t1"],
        ["reject", "r1", "t1", "--reason", "no"],
        ["resume", "r1"],
        ["replay", "r1", "t1"],
        ["cancel", "r1"],
        ["rm", "r1"],
        ["doctor"],
    ],
)
def test_commands_that_need_a_store_never_create_one(tmp_path: Path, command: list[str]) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    foreman.db = tmp_path / "mistyped.db"
    result = foreman.run(*command)
    assert result.returncode == 1, result.stderr
    assert "No run store at" in result.stderr and "mistyped.db" in result.stderr
    assert "Traceback" not in result.stderr
    assert not foreman.db.exists()


@pytest.mark.parametrize("command", [["runs"], ["approvals"]])
def test_lists_of_a_missing_store_are_empty_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    foreman.db = tmp_path / "mistyped.db"
    result = foreman.run(*command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("No runs yet", "No approvals pending"))
    assert not foreman.db.exists()


def test_cancel_stops_a_run_running_in_another_process(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": DAG, "latency": {"do t3": 60}})
    process, run_id = start_slow_run(foreman)
    cancelled = foreman.run("cancel", run_id[:-2])  # a unique prefix names the run
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"Asked run {run_id} to stop" in cancelled.stdout
    stdout, stderr = process.communicate(timeout=60)  # a child left over is killed at teardown
    assert process.returncode == 1, stderr
    last = events_of(stdout)[-1]
    assert last.type == "run_finished" and last.result.status.value == "cancelled"
    assert set(last.result.tasks) >= {"t1", "t2"}  # what was checkpointed is kept
    assert "t4" not in foreman.calls()

    shown = foreman.run("show", run_id)
    assert "cancelled" in shown.stdout
    resumed = foreman.run("resume", run_id)
    assert resumed.returncode == 1 and "already finished" in resumed.stderr
    again = foreman.run("cancel", "last")
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_cancel_and_rm_of_finished_and_unknown_runs(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    first = foreman.run("run", "--json", "one")
    second = foreman.run("run", "--json", "two")
    ids = [events_of(r.stdout)[-1].run_id for r in (first, second)]

    finished = foreman.run("cancel", ids[0])
    assert finished.returncode == 1 and "already succeeded" in finished.stderr
    unknown = foreman.run("rm", "nope", ids[0])
    assert unknown.returncode == 1 and "No run 'nope'" in unknown.stderr
    assert foreman.run("show", ids[0]).returncode == 0  # nothing went: one ref was bad

    removed = foreman.run("rm", "last", ids[0])
    assert removed.returncode == 0, removed.stderr
    assert f"Deleted run {ids[1]}" in removed.stdout and f"Deleted run {ids[0]}" in removed.stdout
    assert ids[0] not in foreman.run("runs").stdout
    with sqlite3.connect(foreman.db) as db:
        for table in ("runs", "plans", "tasks", "events", "approvals"):
            assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_rm_refuses_a_running_run_unless_forced(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, {"plan": DAG, "latency": {"do t3": 60}})
    process, run_id = start_slow_run(foreman)
    try:
        refused = foreman.run("rm", run_id)
        assert refused.returncode == 1 and "foreman cancel" in refused.stderr
        assert foreman.run("show", run_id).returncode == 0
        forced = foreman.run("rm", "--force", run_id)
        assert forced.returncode == 0, forced.stderr
    finally:
        process.kill()
        process.wait(timeout=30)
    assert "No run" in foreman.run("show", run_id).stderr


def test_doctor_reports_each_unreadable_row_and_a_corrupted_row_is_one_line(
    tmp_path: Path,
) -> None:
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "researcher", []))})
    run_id = events_of(foreman.run("run", "--json", "one").stdout)[-1].run_id
    healthy = foreman.run("doctor")
    assert healthy.returncode == 0 and "healthy" in healthy.stdout

    with sqlite3.connect(foreman.db) as db:
        db.execute("UPDATE tasks SET result = '{broken'")
        db.execute("UPDATE runs SET status = 'exploded'")
    db.close()
    for command in (["runs"], ["show", run_id]):
        broken = foreman.run(*command)
        assert broken.returncode == 1
        assert broken.stderr.count("\n") == 1 and "corrupted" in broken.stderr, broken.stderr
        assert run_id in broken.stderr and "Traceback" not in broken.stderr
    checked = foreman.run("doctor")
    assert checked.returncode == 1
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 2 and all(run_id in line for line in lines), lines
