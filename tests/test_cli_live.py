"""The live progress view: timers that tick between events, and words the README shares."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from foreman import events as ev
from foreman.cli.render import LIVE_STATUSES, LiveProgress
from foreman.models.base import Usage
from foreman.results import RunResult, RunStatus
from helpers import plan_of, task

PLAN = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t1"))
README = Path(__file__).parents[1] / "README.md"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shown(progress: LiveProgress) -> str:
    """What the live display draws on its next refresh (what ``Live`` holds, rendered)."""
    console = Console(record=True, width=120, color_system=None)
    console.print(progress.live.renderable)
    return console.export_text()


def test_the_timer_of_a_running_task_ticks_between_events() -> None:
    clock = Clock()
    progress = LiveProgress(Console(record=True), clock=clock)
    progress.handle(ev.PlanReady(run_id="r", plan=PLAN, usage=Usage()))
    progress.handle(ev.TaskStarted(run_id="r", task_id="t1", worker="researcher"))

    clock.now += 2.5
    assert re.search(r"t1 +researcher +running +- +2\.5s", shown(progress))
    clock.now += 1.0  # no event in between: the next refresh alone must show the new time
    assert re.search(r"t1 +researcher +running +- +3\.5s", shown(progress))


def test_the_view_shows_only_its_documented_status_words() -> None:
    progress = LiveProgress(Console(record=True), clock=Clock())
    events = [
        ev.PlanReady(run_id="r", plan=PLAN, usage=Usage()),
        ev.TaskStarted(run_id="r", task_id="t1", worker="researcher"),
        ev.TaskRetried(run_id="r", task_id="t1", attempt=1, error="429", delay=0.0),
        ev.TaskFinished(run_id="r", task_id="t1", worker="researcher", output="o",
                        usage=Usage(), latency=1.0, attempts=2),
        ev.ApprovalRequested(run_id="r", task_id="t2", worker="writer", risk="high", inputs="{}"),
        ev.TaskFailed(run_id="r", task_id="t3", worker="writer", error="e", policy="skip"),
        ev.TaskSkipped(run_id="r", task_id="t2", reason="rejected"),
        ev.RunFinished(run_id="r", result=RunResult(run_id="r", request="q",
                                                    status=RunStatus.partial)),
    ]  # fmt: skip
    seen = set()
    for event in events:
        progress.handle(event)
        seen |= set(progress.status.values())
    assert seen <= set(LIVE_STATUSES)
    assert {"pending", "running", "retrying", "succeeded", "approval", "failed"} <= seen


def test_the_readme_sample_uses_the_views_status_words() -> None:
    sample = README.read_text(encoding="utf-8").split("## What a run looks like", 1)[1]
    block = sample.split("```text", 1)[1].split("```", 1)[0]
    rows = [line.split() for line in block.splitlines() if re.match(r"\s*t\d+\s", line)]
    assert rows, "the README's sample run has no task rows"
    assert {row[2] for row in rows} <= set(LIVE_STATUSES)


def test_retries_of_planning_and_reviews_are_shown() -> None:
    progress = LiveProgress(Console(record=True), clock=Clock())
    progress.handle(ev.CallRetried(run_id="r", purpose="plan", attempt=1, error="429", delay=0))
    assert "Plan attempt 1 failed; retrying" in shown(progress)
    progress.handle(ev.PlanReady(run_id="r", plan=PLAN, usage=Usage()))
    progress.handle(
        ev.CallRetried(run_id="r", purpose="review", task_id="t1", attempt=2, error="[x]", delay=0)
    )
    assert re.search(r"t1 .*review attempt 2 failed: \[x\]", shown(progress))


def test_a_for_each_task_shows_its_items_progress() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1", for_each="t1"))
    progress = LiveProgress(Console(record=True), clock=Clock())
    progress.handle(ev.PlanReady(run_id="r", plan=plan, usage=Usage()))
    progress.handle(
        ev.TaskExpanded(run_id="r", task_id="t2", count=3, item_ids=["t2.1", "t2.2", "t2.3"])
    )
    assert re.search(r"t2 +writer +running +t1 +0\.0s 0/3 items done", shown(progress))
    progress.handle(ev.TaskStarted(run_id="r", task_id="t2.2", worker="writer"))
    progress.handle(
        ev.TaskFailed(run_id="r", task_id="t2.2", worker="writer", error="e", policy="skip")
    )
    assert re.search(r"t2 +writer +running +t1 +0\.0s 1/3 items done", shown(progress))
    assert "t2.2" not in shown(progress)  # items are counted under their task, not listed
