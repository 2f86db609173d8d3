"""Nested runs at the command line: where a run sits in its hierarchy, and what to resume.

A nested run is resumed through its top-level run (which continues it where it paused),
so every hint about a nested run names the top-level run to resume, and the path from it.
"""

from __future__ import annotations

from rich.text import Text

from foreman.cli.text import literal
from foreman.engine.nesting import child_run_id
from foreman.engine.orchestrator import Orchestrator
from foreman.errors import ForemanError
from foreman.results import RunResult, TaskStatus
from foreman.store.base import RunRecord, Store
from foreman.workers.nested import TeamWorker


async def lineage(store: Store, run_id: str) -> list[str]:
    """The runs from the top-level one down to ``run_id`` (just ``[run_id]`` for a
    top-level run); a parent deleted meanwhile ends the climb."""
    path = [run_id]
    while len(path) < 64:  # a store that loops its links must not hang the CLI
        record = await store.get_run(path[0])
        if record.parent_run_id is None:
            break
        path.insert(0, record.parent_run_id)
    return path


def path_text(path: list[str]) -> Text:
    """``top -> top.t2 -> top.t2.c1``: a nested run's place, each id whole (ids are copied)."""
    text = Text()
    for index, run_id in enumerate(path):
        if index:
            text.append(" -> ", style="dim")
        text.append(literal(run_id), style="bold" if index == len(path) - 1 else "")
    return text


def nested_waiting_note(orchestrator: Orchestrator, result: RunResult) -> str:
    """For a run paused because nested runs wait: which ones, and where to decide (the
    approval belongs to the nested run's task, not to the parent's)."""
    nested = [
        child_run_id(result.run_id, task.task_id)
        for task in result.tasks.values()
        if task.status is TaskStatus.waiting
        and task.worker in orchestrator.registry
        and isinstance(orchestrator.registry.get(task.worker), TeamWorker)
    ]
    if not nested:
        return ""
    return (
        f" Nested run(s) {', '.join(nested)} wait inside: `foreman approvals` lists their "
        f"tasks to decide; `foreman resume {result.run_id}` then continues them."
    )


async def refuse_nested(store: Store, record: RunRecord) -> None:
    """A nested run is resumed through its top-level run, which rebuilds its team (a
    Python team is not in the nested run's settings) and records what it spends."""
    top = (await lineage(store, record.run_id))[0]
    raise ForemanError(
        f"Run {record.run_id} is nested in run {record.parent_run_id} (its task "
        f"{record.parent_task_id}); `foreman resume {top}` continues it where it was."
    )
