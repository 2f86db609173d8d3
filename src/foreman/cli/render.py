"""Rendering for the terminal: the plan as a tree, live task progress, the worker list."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from foreman import events as ev
from foreman.engine.results import RunResult
from foreman.plan.schema import Plan, Task
from foreman.workers.registry import Registry

#: Colours of task and run statuses, in live progress, `show` and `runs` alike.
STATUS_STYLE = {
    "pending": "dim",
    "not run": "dim",
    "running": "yellow",
    "retrying": "magenta",
    "approval": "magenta",
    "waiting": "magenta",
    "waiting_approval": "magenta",
    "succeeded": "green",
    "partial": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "aborted": "red",
    "skipped": "red dim",
    "crashed": "red",
    "cancelled": "dim",
}


def dag_tree(plan: Plan, root: Tree, add_task: Callable[[Tree, Task], Tree] | None = None) -> Tree:
    """Each task under the tasks it depends on; a task with several parents shows once per
    parent, marked after the first, so the DAG reads as a tree without losing an edge.

    ``add_task(parent, task)`` adds a task's node (and any detail under it) and returns it;
    by default the node is the task's id, worker and instructions.
    """
    add_task = add_task or (lambda parent, task: parent.add(task_label(task)))
    tasks = {task.id: task for task in plan.tasks}
    children = plan.dependants()
    shown: set[str] = set()

    def add(parent: Tree, task_id: str) -> None:
        if task_id in shown:
            parent.add(f"[dim]{task_id} (see above)[/]")
            return
        shown.add(task_id)
        branch = add_task(parent, tasks[task_id])
        for child in children[task_id]:
            add(branch, child)

    for task in plan.tasks:
        if not task.depends_on:
            add(root, task.id)
    return root


def task_label(task: Task, status: str | None = None) -> str:
    shown = f" [{STATUS_STYLE.get(status, 'dim')}]{status}[/]" if status else ""
    return f"[bold]{task.id}[/] [cyan]{task.worker}[/]{shown}: {escape(task.instructions)}"


def plan_tree(plan: Plan) -> Tree:
    return dag_tree(plan, Tree(f"[bold]Plan[/] ({len(plan.tasks)} tasks)"))


def workers_table(registry: Registry) -> Table:
    table = Table(title="Workers", show_lines=False)
    for column in ("name", "description", "model", "risk", "retries", "on failure"):
        table.add_column(column)
    for worker in registry:
        table.add_row(
            worker.name,
            worker.description,
            worker.model or "(default)",
            worker.risk.value,
            str(worker.retry.max_attempts - 1),
            worker.on_failure + (f" → {worker.fallback}" if worker.fallback else ""),
        )
    return table


class LiveProgress:
    """A live table of tasks (waiting, running, done) fed by the run's events."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plan: Plan | None = None
        self.status: dict[str, str] = {}
        self.note: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.headline = "Planning…"
        self.live = Live(self._render(), console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.__exit__(*exc)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the live table while the terminal is used for something else (a prompt)."""
        self.live.stop()
        try:
            yield
        finally:
            self.live.start()

    def handle(self, event: ev.Event) -> None:
        match event:
            case ev.PlanRejected(attempt=attempt, errors=errors):
                self.headline = f"Plan attempt {attempt} rejected ({errors[0]}); asking again…"
            case ev.PlanReady(plan=plan):
                self.plan = plan
                self.status = {task.id: "pending" for task in plan.tasks}
                self.headline = "Running"
            case ev.TaskStarted(task_id=task_id):
                self.status[task_id] = "running"
                self.started[task_id] = time.perf_counter()
            case ev.TaskRetried(task_id=task_id, attempt=attempt, error=error):
                self.status[task_id] = "retrying"
                self.note[task_id] = f"attempt {attempt} failed: {error[:60]}"
            case ev.TaskFallback(task_id=task_id, to=to):
                self.note[task_id] = f"fell back to {to}"
            case ev.TaskValidated(task_id=task_id, approved=approved, revision=revision):
                verdict = {True: "approved", False: "rejected", None: "not reviewed"}[approved]
                self.note[task_id] = f"review {revision + 1}: {verdict}"
            case ev.TaskFinished(task_id=task_id, latency=latency, usage=usage):
                self.status[task_id] = "succeeded"
                self.note[task_id] = f"{latency:.1f}s, {usage.total_tokens} tokens"
            case ev.TaskFailed(task_id=task_id, error=error):
                self.status[task_id] = "failed"
                self.note[task_id] = error[:80]
            case ev.ApprovalRequested(task_id=task_id, risk=risk):
                self.status[task_id] = "approval"
                self.note[task_id] = f"{risk} risk: waiting for approval"
            case ev.ApprovalDecided(task_id=task_id, approved=approved):
                self.note[task_id] = "approved" if approved else "rejected"
            case ev.TaskSkipped(task_id=task_id, reason=reason):
                self.status[task_id] = "skipped"
                self.note[task_id] = reason[:80]
            case ev.Assembled(method=method):
                self.headline = f"Assembled ({method})"
            case ev.RunFinished(result=result):
                self.headline = f"Finished: {result.status.value}"
        done = ("succeeded", "failed", "skipped", "approval")
        if self.headline == "Running" and all(s in done for s in self.status.values()):
            self.headline = "Assembling the answer…"
        self.live.update(self._render())

    def _render(self) -> Group:
        table = Table(expand=False, box=None, padding=(0, 1))
        for column in ("task", "worker", "status", "needs", "detail"):
            table.add_column(column)
        for task in self.plan.tasks if self.plan else ():
            status = self.status.get(task.id, "pending")
            detail = self.note.get(task.id, "")
            if status in ("running", "retrying") and task.id in self.started:
                detail = f"{time.perf_counter() - self.started[task.id]:.1f}s {detail}".strip()
            table.add_row(
                task.id,
                task.worker,
                Text(status, style=STATUS_STYLE[status]),
                ", ".join(task.depends_on) or "-",
                detail,
            )
        return Group(Text(self.headline, style="bold"), table)


def print_result(console: Console, result: RunResult) -> None:
    style = {"succeeded": "green", "partial": "yellow"}.get(result.status.value, "red")
    usage = result.usage
    subtitle = (
        f"{result.status.value} · {len(result.tasks)} tasks · {usage.input_tokens} in / "
        f"{usage.output_tokens} out tokens · {result.elapsed:.1f}s · run {result.run_id}"
    )
    if result.answer:
        body = Markdown(result.answer)
    else:
        body = Text(result.error or f"No answer yet: the run is {result.status.value}.")
    console.print(Panel(body, title="Answer", subtitle=subtitle, border_style=style))
