"""Rendering for the terminal: the plan as a tree, live task progress, the worker list."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from foreman import events as ev
from foreman.cli.text import literal, safe_text
from foreman.engine.estimate import PlanEstimate, StepEstimate
from foreman.plan.prompts import format_usd
from foreman.plan.schema import Plan, Task
from foreman.results import RunResult
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

#: The words the live view shows for a task (README's sample must use these).
LIVE_STATUSES = ("pending", "running", "retrying", "approval", "succeeded", "failed", "skipped")

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
    "crashed": "red",
    "cancelled": "red dim",
    "over_budget": "yellow",
    "stalled": "yellow",
    "skipped": "red dim",
}


#: How deep ``dag_tree`` nests at most before it starts a task again at the top level: a
#: chain 1,000 tasks long stays readable (and within the recursion limit of any renderer).
MAX_TREE_DEPTH = 24
#: Columns a tree keeps for its labels: a narrower terminal gets a shallower tree, never
#: nodes squeezed to nothing (rich drops what does not fit).
LABEL_WIDTH = 40


def fitting_depth(width: int) -> int:
    """Levels a tree may nest in ``width`` columns (rich indents 4 per level)."""
    return max(1, min(MAX_TREE_DEPTH, (width - LABEL_WIDTH) // 4))


class FittedTree:
    """A tree built when it is printed, as deep as the console it is printed on allows."""

    def __init__(self, build: Callable[[int], Tree]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(fitting_depth(options.max_width))


def dag_tree(
    plan: Plan,
    root: Tree,
    add_task: Callable[[Tree, Task], Tree] | None = None,
    *,
    max_depth: int = MAX_TREE_DEPTH,
) -> Tree:
    """Each task under the tasks it depends on; a task with several parents shows once per
    parent, marked after the first, so the DAG reads as a tree without losing an edge.

    ``add_task(parent, task)`` adds a task's node (and any detail under it) and returns it;
    by default the node is the task's id, worker and instructions. The walk is iterative
    and nests at most ``max_depth`` levels: a deeper task starts a new top-level branch
    marked with the task it continues from.
    """
    add_task = add_task or (lambda parent, task: parent.add(task_label(task)))
    tasks = {task.id: task for task in plan.tasks}
    children = plan.dependants()
    shown: set[str] = set()
    # (parent node, task id, depth of the parent node, the task's parent id), depth first
    stack = [(root, task.id, 0, "") for task in reversed(plan.tasks) if not task.depends_on]
    while stack:
        parent, task_id, depth, parent_id = stack.pop()
        if task_id in shown:
            parent.add(Text(literal(f"{task_id} (see above)"), style="dim"))
            continue
        if depth >= max_depth:
            parent = root.add(Text(literal(f"… continued from {parent_id}"), style="dim"))
            depth = 1
        shown.add(task_id)
        branch = add_task(parent, tasks[task_id])
        stack.extend((branch, child, depth + 1, task_id) for child in reversed(children[task_id]))
    return root


def task_label(task: Task, status: str | None = None, *, cost: str | None = None) -> Text:
    """``t1 researcher status: instructions``, every part taken literally (never markup);
    ``cost`` (an estimate) goes after the worker."""
    label = Text.assemble((literal(task.id), "bold"), " ", (literal(task.worker), "cyan"))
    if cost:
        label.append(" ").append(cost, style="green")
    if status:
        label.append(" ").append(status, style=STATUS_STYLE.get(status, "dim"))
    if task.for_each:
        label.append(" for each ", style="dim").append(literal(task.for_each), style="magenta")
    return label.append(": ").append(literal(task.instructions))


def plan_tree(plan: Plan, estimate: PlanEstimate | None = None) -> FittedTree:
    """The plan as a tree; with an ``estimate``, each task's cost and time in its label."""
    title = Text.assemble(("Plan", "bold"), f" ({len(plan.tasks)} tasks)")

    def add_task(parent: Tree, task: Task) -> Tree:
        if estimate is None:
            return parent.add(task_label(task))
        step = estimate.task(task.id)
        return parent.add(task_label(task, cost=f"~{usd(step.cost_usd)} {duration(step.seconds)}"))

    return FittedTree(lambda depth: dag_tree(plan, Tree(title), add_task, max_depth=depth))


def plan_json(plan: Plan, estimate: PlanEstimate) -> str:
    """``plan --json``: the plan's own fields (it still reads as a ``Plan``), and its
    ``estimate``."""
    data = {**plan.model_dump(mode="json"), "estimate": estimate.model_dump(mode="json")}
    return json.dumps(data, indent=2, ensure_ascii=False)


def estimate_table(estimate: PlanEstimate) -> Table:
    """Each step's estimated cost, time and what it rests on, then the plan's totals."""
    steps: list[tuple[str, str, StepEstimate]] = []
    if estimate.planning is not None:
        steps.append(("planning", "", estimate.planning))
    steps += [(task.task_id, task.worker, task) for task in estimate.tasks]
    if estimate.synthesis is not None:
        steps.append(("synthesis", "", estimate.synthesis))
    models = list(dict.fromkeys(step.model for _, _, step in steps))
    one_model = len(models) == 1  # then named once, in the title: the table stays narrow
    title = Text.assemble(
        ("Estimate", "bold"), literal(f" (every step on {models[0]})") if one_model else ""
    )
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    columns = ["step", "worker", *([] if one_model else ["model"]), "cost", "time", "basis"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("cost", "time") else "left")
    for name, worker, step in steps:
        model = [] if one_model else [safe_text(step.model)]
        table.add_row(
            safe_text(name),
            safe_text(worker),
            *model,
            usd(step.cost_usd),
            duration(step.seconds),
            safe_text(step.basis, style="dim"),
        )
    histories = sum(step.from_history for _, _, step in steps)
    table.add_row(
        Text("total", style="bold"),
        "",
        *([] if one_model else [""]),
        Text(usd(estimate.cost_usd), style="bold"),
        Text(duration(estimate.seconds), style="bold"),
        Text(f"{histories} of {len(steps)} steps from history", style="dim"),
    )
    return table


def usd(dollars: float | None) -> str:
    """Dollars, or ``?`` for a cost that cannot be known (a model with no price)."""
    return "?" if dollars is None else format_usd(dollars)


def duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``: short enough for a table column."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def workers_table(registry: Registry) -> Table:
    table = Table(title="Workers", show_lines=False)
    for column in ("name", "description", "model", "risk", "retries", "on failure"):
        table.add_column(column)
    for worker in registry:
        table.add_row(
            safe_text(worker.name),
            safe_text(worker.description),
            safe_text(worker.model or "(default)"),
            worker.risk.value,
            str(worker.retry.max_attempts - 1),
            safe_text(worker.on_failure + (f" → {worker.fallback}" if worker.fallback else "")),
        )
    return table


def worker_json(worker: Worker) -> dict[str, Any]:
    """A worker for ``workers --json``: its fields, schemas as JSON schemas."""
    data = worker.model_dump(mode="json", exclude={"input_schema", "output_schema"})
    for field in ("input_schema", "output_schema"):
        schema = getattr(worker, field)
        data[field] = schema.model_json_schema() if schema is not None else None
    return data


class LiveProgress:
    """A live table of tasks (pending, running, done) fed by the run's events.

    ``Live`` is handed this object, not a snapshot: it re-renders it on every refresh, so
    the elapsed time of running tasks ticks between events. ``clock`` is injectable for tests.
    """

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.console = console
        self.clock = clock
        self.plan: Plan | None = None
        self.status: dict[str, str] = {}
        self.note: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.items: dict[str, list[str]] = {}  # a for-each task's items, as they are known
        self.item_of: dict[str, str] = {}
        self.headline = "Planning…"
        self.live = Live(self, console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)  # stopping draws the view a last time

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
                self.started[task_id] = self.clock()
            case ev.TaskRetried(task_id=task_id, attempt=attempt, error=error):
                self.status[task_id] = "retrying"
                self.note[task_id] = f"attempt {attempt} failed: {error[:60]}"
            case ev.CallRetried(purpose=purpose, task_id=task_id, attempt=attempt, error=error):
                if task_id is not None:  # a review of that task
                    self.note[task_id] = f"{purpose} attempt {attempt} failed: {error[:60]}"
                else:
                    self.headline = f"{purpose.capitalize()} attempt {attempt} failed; retrying…"
            case ev.TaskRouted(task_id=task_id, worker=worker, router=router, score=score):
                how = f"{router} router" + (f", score {score:.2f}" if score is not None else "")
                self.note[task_id] = f"routed to {worker} ({how})"
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
            case ev.ApprovalRequested(task_id=key, risk=risk, tool=str() as tool):
                task_id = key.rsplit("#", 1)[0]  # a tool call's key: <task>#<n>
                self.status[task_id] = "approval"
                self.note[task_id] = f"{risk} risk tool {tool}: waiting for approval"
            case ev.ToolCalled(task_id=task_id, tool=tool):
                self.note[task_id] = f"calling {tool}"
            case ev.ToolFinished(task_id=task_id, tool=tool, outcome=outcome):
                self.note[task_id] = f"{tool}: {outcome.value}"
            case ev.ApprovalRequested(task_id=task_id, risk=risk):
                self.status[task_id] = "approval"
                self.note[task_id] = f"{risk} risk: waiting for approval"
            case ev.ApprovalDecided(task_id=task_id, approved=approved):
                self.note[task_id] = "approved" if approved else "rejected"
            case ev.TaskSkipped(task_id=task_id, reason=reason):
                self.status[task_id] = "skipped"
                self.note[task_id] = reason[:80]
            case ev.TaskExpanded(task_id=task_id, item_ids=item_ids):
                self.items[task_id] = item_ids
                self.item_of.update(dict.fromkeys(item_ids, task_id))
                self.status[task_id] = "running"
                self.started[task_id] = self.clock()
            case ev.Assembled(method=method):
                self.headline = f"Assembled ({method})"
            case ev.OrchestratorTurn(turn=turn, delegations=tasks, final=final):
                if tasks:  # a delegating run's plan grows turn by turn
                    earlier = self.plan.tasks if self.plan else []
                    self.plan = Plan(tasks=[*earlier, *tasks])
                    self.status.update({task.id: "pending" for task in tasks})
                self.headline = (
                    f"Turn {turn}: answered" if final else f"Turn {turn}: {len(tasks)} delegated"
                )
            case ev.RunFinished(result=result):
                self.headline = f"Finished: {result.status.value}"
            case ev.PlanRevised(plan=plan, version=version, added=added, changed=changed):
                self.plan, self.headline = plan, "Running"  # after a refused attempt too
                self.status = {task.id: self.status.get(task.id, "pending") for task in plan.tasks}
                for task_id in added + changed:
                    how = "added" if task_id in added else "changed"
                    self.note[task_id] = f"{how} in plan v{version}"
            case ev.ReplanStalled(reason=reason):
                self.headline = f"Replanning stalled: {reason[:80]}"
            case ev.ContextCompacted(purpose=purpose, compacted=compacted):
                self.headline = f"Compacted {len(compacted)} results for {purpose}…"
            case ev.NestedEvent(task_id=task_id, child_run_id=child):
                self.note[task_id] = f"nested run {child}: {_innermost(event).type}"
        done = ("succeeded", "failed", "skipped", "approval")
        if (parent := self.item_of.get(getattr(event, "task_id", ""))) is not None:
            ids = self.items[parent]
            settled = sum(self.status.get(item) in done for item in ids)
            self.note[parent] = f"{settled}/{len(ids)} items done"
        elif isinstance(event, ev.TaskExpanded):
            self.note[event.task_id] = f"0/{event.count} items done"
        if self.headline == "Running" and all(s in done for s in self.status.values()):
            self.headline = "Assembling the answer…"

    def __rich__(self) -> Group:
        table = Table(expand=False, box=None, padding=(0, 1))
        for column in ("task", "worker", "status", "needs", "detail"):
            table.add_column(column)
        for task in self.plan.tasks if self.plan else ():
            status = self.status.get(task.id, "pending")
            detail = self.note.get(task.id, "")
            if status in ("running", "retrying") and task.id in self.started:
                detail = f"{self.clock() - self.started[task.id]:.1f}s {detail}".strip()
            table.add_row(
                safe_text(task.id),
                safe_text(task.worker),
                Text(status, style=STATUS_STYLE[status]),
                safe_text(", ".join(task.depends_on) or "-"),
                safe_text(detail),
            )
        return Group(safe_text(self.headline, style="bold"), table)


def _innermost(event: ev.NestedEvent) -> ev.Event:
    """The event a chain of nested-run envelopes carries."""
    inner = event.event
    while isinstance(inner, ev.NestedEvent):
        inner = inner.event
    return inner


class AnswerMarkdown(Markdown):
    """An answer as Markdown, shown as what it is:

    - HTML in it is kept as text: rich drops HTML tags (``<div>``, ``<script>...``), so
      an answer about HTML would lose its words;
    - a link shows its address after its text, and an image its address after its alt
      text: never a hidden, clickable destination a model chose;
    - a line break in a paragraph stays a line break (Markdown would join the lines).
    """

    def __init__(self, markup: str) -> None:
        super().__init__(markup, hyperlinks=False)
        parser = MarkdownIt().enable("strikethrough").enable("table")
        self.parsed = parser.disable(["html_inline", "html_block"]).parse(markup)
        for token in self.parsed:
            for index, child in enumerate(token.children or ()):
                if child.type == "softbreak":
                    child.type = "hardbreak"
                elif child.type == "image":
                    alt = "".join(grand.content for grand in child.children or ())
                    shown = f"[image: {alt}]({child.attrs.get('src', '')})"
                    token.children[index] = Token("text", "", 0, content=shown)  # type: ignore[index]


def print_result(console: Console, result: RunResult) -> None:
    """The answer in a panel; the run id on its own line below, never cut by the width."""
    style = {
        "succeeded": "green",
        "partial": "yellow",
        "over_budget": "yellow",
        "stalled": "yellow",
    }.get(result.status.value, "red")
    usage = result.usage
    subtitle = Text(
        f"{result.status.value} · {len(result.tasks)} tasks · {usage.input_tokens} in / "
        f"{usage.output_tokens} out tokens · {result.elapsed:.1f}s"
    )
    if result.answer:
        body = AnswerMarkdown(literal(result.answer))
    else:
        body = safe_text(result.error or f"No answer yet: the run is {result.status.value}.")
    console.print(Panel(body, title="Answer", subtitle=subtitle, border_style=style))
    console.print(Text.assemble(("run ", "dim"), result.run_id), soft_wrap=True)
