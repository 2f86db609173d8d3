"""examples/billing_refactor.py, run as a user would (``--scripted``), in its own process:
the acceptance scenario of replanning."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from processes import run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "billing_refactor.py"


def events_of(*options: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = run(
        [sys.executable, str(EXAMPLE), "--scripted", "--json", *options], env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def position(events: list[dict], kind: str, task_id: str) -> int:
    return next(
        i for i, e in enumerate(events) if e["type"] == kind and e.get("task_id") == task_id
    )


@pytest.mark.parametrize("policy", ["on-hint", "always"])
def test_the_billing_refactor_replans_from_what_the_workers_report(policy: str) -> None:
    events = events_of("--replan", policy)
    revised = [e for e in events if e["type"] == "plan_revised"]
    assert [(e["version"], e["added"], e["changed"], e["dropped"]) for e in revised] == [
        (2, [], ["t2"], []),  # research found four modules: the design gets the breakdown
        (3, ["t3", "t4", "t5", "t6"], [], []),  # three independent parts, then a review
        (4, ["t7"], [], []),  # the review found a missing call site: a follow-up patches it
    ]
    design = next(t for t in revised[0]["plan"]["tasks"] if t["id"] == "t2")
    assert (
        "four modules" in design["instructions"] and "reports/export.py" in design["instructions"]
    )

    # the three implementation tasks run in parallel: all started before any finished
    starts = [position(events, "task_started", t) for t in ("t3", "t4", "t5")]
    ends = [position(events, "task_finished", t) for t in ("t3", "t4", "t5")]
    assert max(starts) < min(ends)
    # each revision comes after the result that caused it, and before the tasks it added
    assert position(events, "task_finished", "t1") < events.index(revised[0])
    assert events.index(revised[0]) < position(events, "task_started", "t2")
    assert events.index(revised[1]) < min(starts)
    assert position(events, "task_finished", "t6") < events.index(revised[2])
    assert events.index(revised[2]) < position(events, "task_started", "t7")
    patch = next(e for e in events if e["type"] == "task_finished" and e["task_id"] == "t7")
    assert "export_summary()" in patch["output"]

    final = events[-1]["result"]
    assert final["status"] == "succeeded"
    assert set(final["tasks"]) == {f"t{n}" for n in range(1, 8)}
    assert len(final["plan"]["tasks"]) == 7


def test_the_example_prints_its_plan_versions() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    done = run([sys.executable, str(EXAMPLE), "--scripted"], env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "The review found a missing call site" in done.stdout
    assert "t3, t4, t5, t6" in done.stdout
    assert "succeeded" in done.stdout
