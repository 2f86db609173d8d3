"""Hierarchies from team files, across real processes: a nested run killed mid-task and
resumed through its parent, an approval deep inside decided from another process, and
what `show`, `runs` and `approvals` say about nested runs. Also the example, run with
--scripted as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import processes
from foreman.events import EVENT_ADAPTER
from test_durable_cli import Foreman, events_of, plan

TOP = plan(("t1", "researcher", []), ("t2", "review", ["t1"]))
REVIEW = plan(("c1", "checker", []), ("c2", "publisher", ["c1"]))
EXAMPLE = Path(__file__).parents[1] / "examples" / "nested_review.py"


def teams(tmp_path: Path, *, risk: str = "low") -> Path:
    (tmp_path / "review.yaml").write_text(
        "workers:\n"
        "  - {name: checker, description: Checks., system_prompt: You check.}\n"
        "  - {name: publisher, description: Publishes., system_prompt: You publish., "
        f"risk: {risk}, retry: {{max_attempts: 1}}}}\n"
    )
    top = tmp_path / "top.yaml"
    top.write_text(
        "workers:\n"
        "  - {name: researcher, description: Researches., system_prompt: You research.}\n"
        "  - {name: review, description: Reviews and publishes., team: review.yaml}\n"
    )
    return top


def spec(**extra) -> dict:
    # The nested team's planner sees its workers (publisher): it gets the review plan.
    return {"plan": TOP, "plans": [["publisher", REVIEW]], **extra}


def test_sigkill_inside_a_nested_run_then_resume_continues_it(tmp_path: Path) -> None:
    team = teams(tmp_path)
    foreman = Foreman(tmp_path, spec(latency={"do c2": 60}))
    process = processes.spawn(foreman.command("run", "--team", str(team), "--json", "go"))
    run_id, seen = None, set()
    for line in process.lines(timeout=60):  # until the nested run's c2 is mid-call
        event = EVENT_ADAPTER.validate_json(line)
        run_id = event.run_id
        inner = event.event if event.type == "nested" else event
        seen.add((event.type, inner.type, getattr(inner, "task_id", None)))
        if ("nested", "task_started", "c2") in seen:
            break
    assert ("nested", "task_finished", "c1") in seen, process.stderr()
    processes.wait_until(lambda: "c2" in foreman.calls(), timeout=30, what="c2's call")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    nested = f"{run_id}.t2"
    assert foreman.checkpointed(nested) == {"c1"}
    foreman.set_spec(spec())  # c2 is fast now
    resumed = foreman.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    events = events_of(resumed.stdout)
    assert events[-1].result.status.value == "succeeded"
    # The nested run continued (c1 not repeated; c2 again, it never finished), not restarted.
    assert foreman.calls() == Counter({"t1": 1, "c1": 1, "c2": 2})
    carried = [e for e in events if e.type == "nested"]
    assert carried and all(e.child_run_id == nested and e.task_id == "t2" for e in carried)
    assert any(e.event.type == "run_started" and e.event.resumed for e in carried)
    listed = json.loads(foreman.run("runs", "--json").stdout)
    assert [(r["run_id"], r["parent_run_id"]) for r in listed] == [
        (nested, run_id),
        (run_id, None),
    ]
    top, child = (next(r for r in listed if r["run_id"] == i) for i in (run_id, nested))
    assert top["input_tokens"] > child["input_tokens"] > 0  # the parent's books hold the child's


def test_an_approval_deep_inside_is_listed_decided_and_resumed_from_the_cli(
    tmp_path: Path,
) -> None:
    team = teams(tmp_path, risk="high")
    foreman = Foreman(tmp_path, spec())
    paused = foreman.run("run", "--team", str(team), "go")
    assert paused.returncode == 5, paused.stderr
    listed_runs = json.loads(foreman.run("runs", "--json").stdout)
    run_id = next(r["run_id"] for r in listed_runs if r["parent_run_id"] is None)
    nested = f"{run_id}.t2"
    assert f"Nested run(s) {nested} wait inside" in paused.stderr

    listed = foreman.run("approvals")
    assert f"nested run: {run_id} -> {nested}" in listed.stdout
    assert f"then: foreman resume {run_id}" in listed.stdout
    as_json = json.loads(foreman.run("approvals", "--json").stdout)
    assert [(a["run_id"], a["task_id"], a["run_path"]) for a in as_json] == [
        (nested, "c2", [run_id, nested])
    ]
    approved = foreman.run("approve", nested, "c2")
    assert approved.returncode == 0 and f"foreman resume {run_id}" in approved.stdout

    directly = foreman.run("resume", nested)  # through its top-level run, which says so
    assert directly.returncode == 1 and f"`foreman resume {run_id}` continues it" in (
        directly.stderr
    )
    done = foreman.run("resume", run_id)
    assert done.returncode == 0, done.stderr
    assert foreman.calls() == Counter({"t1": 1, "c1": 1, "c2": 1})
    shown = foreman.run("show", run_id)
    assert f"nested run {nested} succeeded" in shown.stdout
    as_json = json.loads(foreman.run("show", run_id, "--json").stdout)
    assert [(r["run_id"], r["parent_task_id"]) for r in as_json["nested_runs"]] == [(nested, "t2")]
    assert "↳" in foreman.run("runs").stdout  # the nested run is marked
    assert foreman.run("show", "last").stdout == shown.stdout  # last: the top-level run
    # The run's calls are those its total counts: its nested run's too, marked as such.
    ledger = json.loads(foreman.run("show", run_id, "--calls", "--json").stdout)
    assert {call["run_id"] for call in ledger["ledger"]} == {run_id, nested}
    assert len(ledger["ledger"]) == ledger["calls"]
    listed_calls = foreman.run("show", run_id, "--calls").stdout
    assert "t2 > c1" in listed_calls and "t2 > plan" in listed_calls


def _example(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--scripted", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_the_nested_review_example_pauses_then_completes_once_approved(tmp_path: Path) -> None:
    paused = _example()
    assert paused.returncode == 5, paused.stderr
    assert "waiting_approval" in paused.stdout and "publish" in paused.stderr

    approved = _example("--approve", "--json")
    assert approved.returncode == 0, approved.stderr
    events = events_of(approved.stdout)
    assert events[-1].type == "run_finished"
    result = events[-1].result
    assert result.status.value == "succeeded" and "Published" in result.answer
    review = result.tasks["t2"]
    nested = [e for e in events if e.type == "nested"]
    assert {e.child_run_id for e in nested} == {f"{result.run_id}.t2"}
    assert 0 < review.usage.total_tokens < result.usage.total_tokens  # rolled up

    db = str(tmp_path / "runs.db")
    first = _example("--db", db)
    assert first.returncode == 5
    [approval] = json.loads(
        subprocess.run(
            [sys.executable, "-m", "foreman", "approvals", "--json", "--db", db],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
        ).stdout
    )
    top = approval["run_path"][0]
    decided = subprocess.run(
        [sys.executable, "-m", "foreman", "approve", approval["run_id"], "publish", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert decided.returncode == 0, decided.stderr
    resumed = _example("--db", db, "--resume", top)
    assert resumed.returncode == 0, resumed.stderr
    assert "succeeded" in resumed.stdout


def test_run_max_depth_zero_keeps_teams_from_nesting(tmp_path: Path) -> None:
    foreman = Foreman(tmp_path, spec())
    done = foreman.run("run", "--team", str(teams(tmp_path)), "--max-depth", "0", "--json", "go")
    assert done.returncode == 3, done.stderr  # partial: the team's task failed
    result = events_of(done.stdout)[-1].result
    assert "max_depth" in result.tasks["t2"].error
    assert "c1" not in foreman.calls()


def test_show_of_a_task_carried_out_by_a_nested_run_points_to_that_run(tmp_path: Path) -> None:
    """Not 'No calls recorded: the run was stored before the call ledger existed'."""
    foreman = Foreman(tmp_path, spec())
    done = foreman.run("run", "--team", str(teams(tmp_path)), "--json", "go")
    assert done.returncode == 0, done.stderr
    run_id = events_of(done.stdout)[-1].result.run_id
    nested = f"{run_id}.t2"

    shown = foreman.run("show", run_id, "t2")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert f"Carried out by the nested run {nested}: `foreman show {nested}`" in text
    assert "before the call ledger" not in text and "calls unknown" not in text
    child = next(
        r for r in json.loads(foreman.run("runs", "--json").stdout) if r["run_id"] == nested
    )
    as_json = json.loads(foreman.run("show", run_id, "t2", "--json").stdout)
    assert as_json["nested_run"] == nested
    assert as_json["usage"]["input_tokens"] == child["input_tokens"] > 0
    assert as_json["calls"] == [] and "Task t2: 4 call(s)" in text  # plan, c1, c2, synthesis


def test_rm_refuses_a_nested_run_alone_and_deletes_it_with_its_parent(tmp_path: Path) -> None:
    """Deleting a nested run alone rewrote its parent's books (they count its calls)."""
    foreman = Foreman(tmp_path, spec())
    done = foreman.run("run", "--team", str(teams(tmp_path)), "--json", "go")
    run_id = events_of(done.stdout)[-1].result.run_id
    nested = f"{run_id}.t2"

    def tokens() -> dict[str, int]:
        listed = json.loads(foreman.run("runs", "--json").stdout)
        return {r["run_id"]: r["input_tokens"] for r in listed}

    before = tokens()
    refused = foreman.run("rm", nested)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"`foreman rm {run_id}` deletes it" in " ".join(refused.stderr.split())
    assert tokens() == before  # nothing deleted, the parent's books intact

    both = foreman.run("rm", nested, run_id)  # the parent takes its nested run with it
    assert both.returncode == 0, both.stderr
    assert both.stdout.split() == ["Deleted", "run", f"{run_id}."]
    assert tokens() == {}


def test_stats_of_a_run_count_its_nested_runs_like_its_books(tmp_path: Path) -> None:
    """`foreman stats --run PARENT` left out the nested runs' calls `runs` counts for it."""
    foreman = Foreman(tmp_path, spec())
    done = foreman.run("run", "--team", str(teams(tmp_path)), "--json", "go")
    run_id = events_of(done.stdout)[-1].result.run_id
    top = next(r for r in json.loads(foreman.run("runs", "--json").stdout) if r["run_id"] == run_id)

    by_run = json.loads(foreman.run("stats", "--run", run_id, "--by", "run", "--json").stdout)

    assert {group["run_id"] for group in by_run} == {run_id, f"{run_id}.t2"}
    assert sum(group["input_tokens"] for group in by_run) == top["input_tokens"]
