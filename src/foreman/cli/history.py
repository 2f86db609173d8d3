"""``foreman runs`` and ``foreman show``: what ran, what it cost, and why it went that way."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from foreman.cli.calls import (
    BEFORE_LEDGER,
    books_json,
    books_line,
    call_errors,
    call_json,
    calls_table,
    money,
    task_books,
    task_view,
)
from foreman.cli.common import DbOpt, RunRefArg, app, guard, out, with_store
from foreman.cli.render import STATUS_STYLE, FittedTree, dag_tree, task_label
from foreman.cli.replans import versions_json, versions_table
from foreman.cli.text import literal, safe_text
from foreman.cli.tool_calls import tool_calls_json, tool_calls_table
from foreman.ledger.books import Books, priced_now
from foreman.ledger.records import CallRecord
from foreman.plan.foreach import find_task, item_ids_of, made_task, no_task
from foreman.plan.schema import Task
from foreman.results import TaskResult
from foreman.store.base import PlanVersion, RunRecord, RunSummary, Store
from foreman.tools.records import ToolCallRecord


@app.command()
def runs(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, one object per run.")
    ] = False,
) -> None:
    """List runs: id, request, status, tasks done, tokens, estimated cost, age (since it
    started). A run that stopped at its budget shows the limit it reached: over_budget
    (max_cost_usd)."""
    summaries = guard(lambda: asyncio.run(with_store(db, lambda s: s.list_runs(limit))))
    if json_out:
        print(json.dumps([summary.as_json() for summary in summaries], indent=2))
    elif not summaries:
        out.print('No runs yet: `foreman run "<request>"` starts one.')
    else:
        out.print(runs_table(summaries))
        if unpriced := sorted({model for run in summaries for model in run.unpriced}):
            out.print(
                safe_text(
                    f"cost unknown: no price for {', '.join(unpriced)}. Set FOREMAN_PRICES "
                    "(e.g. '{\"model-id\": [input, output]}', dollars per million tokens).",
                    style="dim",
                )
            )


@app.command()
def show(
    run: RunRefArg,
    task_id: Annotated[
        str | None,
        typer.Argument(
            metavar="TASK",
            help="A task id (e.g. t2, or t2.3 for item 3 of a for-each task): its "
            "instructions, every call's prompt, output, tokens and cost, and its tool calls.",
            show_default=False,
        ),
    ] = None,
    calls: Annotated[
        bool,
        typer.Option(
            "--calls",
            help="List the run's model calls (every attempt: tokens, cost, latency, errors) "
            "and its workers' tool calls (tool, arguments, outcome, latency).",
        ),
    ] = False,
    db: DbOpt = None,
    full: Annotated[bool, typer.Option(help="Print whole outputs, not their first lines.")] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the run and all its tasks as one JSON object (with --calls, and its "
            "calls under 'ledger', its tool calls under 'tool_calls'); with TASK, the task, "
            "its result, its calls and its tool calls.",
        ),
    ] = False,
) -> None:
    """Show a run: its plan as a tree with each task's status, output and error, and what
    it cost. --calls lists its model and tool calls; TASK shows one task's prompts,
    outputs and tool calls."""
    if task_id is not None:
        show_task(run, task_id, db, json_out=json_out)
        return

    async def load(
        store: Store,
    ) -> tuple[
        RunRecord,
        dict[str, TaskResult],
        list[CallRecord],
        list[PlanVersion],
        list[RunSummary],
        list[ToolCallRecord],
    ]:
        run_id = await store.resolve_run(run)
        # Its nested runs' calls too: the run's books count them.
        listed = await store.list_calls(run_id=run_id, descendants=True) if calls else []
        ledger = priced_now(listed)
        tooled = await store.list_tool_calls(run_id=run_id) if calls else []
        record, tasks = await store.get_run(run_id), await store.load_tasks(run_id)
        versions, nested = await store.list_plans(run_id), await store.child_runs(run_id)
        return record, tasks, ledger, versions, nested, tooled

    record, tasks, ledger, versions, nested, tooled = guard(
        lambda: asyncio.run(with_store(db, load))
    )
    if json_out:
        shown = record.model_dump(mode="json")
        shown["tasks"] = [task.model_dump(mode="json") for task in tasks.values()]
        shown["plan_versions"] = versions_json(versions)
        shown["nested_runs"] = [child.as_json() for child in nested]
        if calls:
            shown["ledger"] = [call_json(call, prompts=False) for call in ledger]
            shown["tool_calls"] = tool_calls_json(tooled)
        print(json.dumps(shown, indent=2))
        return
    if calls:
        if ledger:
            out.print(calls_table(record, ledger))
        else:
            why = f": {BEFORE_LEDGER}" if record.usage.total_tokens else " yet"
            out.print(Text(f"No calls recorded{why}."))
        if errors := call_errors(ledger, record.run_id):
            out.print(Text("\nErrors", style="bold red"))
            for line in errors:
                out.print(line)  # wrapped: the section fits the terminal too
        if tooled:
            out.print(Text(""), tool_calls_table(record, tooled))
        out.print(Text.assemble("\n", run_books(record)))
        return
    out.print(run_tree(record, tasks, full=full, nested=nested))
    if len(versions) > 1:  # the plan was revised as the run went
        out.print(Text(""), versions_table(versions))
    if record.answer:
        out.print(Text.assemble("\n", ("Answer", "bold"), "\n", literal(record.answer)))
    if record.error:
        out.print(Text.assemble("\n", ("Error", "bold red"), " ", literal(record.error)))
    out.print(Text.assemble("\n", run_books(record)))


def show_task(run: str, task_id: str, db: Path | None, *, json_out: bool) -> None:
    """``show RUN TASK``: what the task's worker (and reviewer) were sent and answered."""

    async def load(
        store: Store,
    ) -> tuple[
        RunRecord, TaskResult | None, list[CallRecord], RunRecord | None, list[ToolCallRecord]
    ]:
        run_id = await store.resolve_run(run)
        record = await store.get_run(run_id)
        stored = await store.load_tasks(run_id)
        if made_task(record.plan, task_id, stored) is None:
            raise no_task(run_id, task_id, record.plan)
        ledger = priced_now(
            await store.list_calls(run_id=run_id, task_id=task_id, with_prompts=True)
        )
        nested = [c.run_id for c in await store.child_runs(run_id) if c.parent_task_id == task_id]
        child = await store.get_run(nested[0]) if nested else None
        tooled = await store.list_tool_calls(run_id=run_id, task_id=task_id)
        return record, stored.get(task_id), ledger, child, tooled

    record, result, ledger, nested, tooled = guard(lambda: asyncio.run(with_store(db, load)))
    assert record.plan is not None  # load checked the task is in the plan
    task = find_task(record.plan, task_id)
    assert task is not None  # an item task of a for-each task, or a task of the plan
    if json_out:
        shown = {
            "run_id": record.run_id,
            "task": task.model_dump(mode="json"),
            "result": result.model_dump(mode="json") if result else None,
            "prompts_recorded": record.settings.get("record_prompts") is not False,
            "calls": [call_json(call, prompts=True) for call in ledger],
            "nested_run": nested.run_id if nested else None,
            "tool_calls": tool_calls_json(tooled),
            **books_json(task_books(result, ledger, nested)),
        }
        print(json.dumps(shown, indent=2))
        return
    out.print(task_view(record, task, result, ledger, nested=nested))
    if tooled:
        out.print(Text(""), tool_calls_table(record, tooled, width=70))


def run_books(record: RunRecord) -> Text:
    """The run's total: tokens and dollars of every call, as summed from its ledger."""
    books = Books(
        usage=record.usage,
        cost_usd=record.cost_usd,
        unpriced=record.unpriced,
        calls=record.calls,
    )
    return books_line(books, what="Total")


#: How ``runs`` names the budget limit an over-budget run reached (the table is narrow).
LIMIT_WORDS = {
    "max_tokens": "tokens",
    "max_cost_usd": "cost",
    "max_seconds": "time",
    "max_calls": "calls",
}


def _status(run: RunSummary) -> str:
    limit = run.budget_limit
    return f"{run.status.value} ({LIMIT_WORDS.get(limit, limit)})" if limit else run.status.value


def runs_table(summaries: list[RunSummary]) -> Table:
    rows = [
        (
            safe_text(run.run_id),
            # a nested run (its id extends its parent's) is marked, its request indented
            safe_text(("↳ " if run.parent_run_id else "") + _clip(run.request, 40)),
            Text(_status(run), style=STATUS_STYLE.get(run.status.value, "")),
            Text(f"{run.tasks_done}/{run.tasks}"),
            Text(f"{run.usage.total_tokens:,}"),
            Text(money(run.cost)),
            Text(_age(run.created_at)),
        )
        for run in summaries
    ]
    # No borders, two spaces between columns: an 80-column terminal still has room for the
    # request. Every other column keeps its full width (a run id is copied into commands);
    # only the request gives way, wrapping onto more lines.
    table = Table(title="Runs", box=None, padding=(0, 1), pad_edge=False)
    for index, column in enumerate(("run", "request", "status", "tasks", "tokens", "cost", "age")):
        widest = max([len(column), *(row[index].cell_len for row in rows)])
        table.add_column(
            column,
            justify="right" if column in ("tokens", "cost") else "left",
            no_wrap=column != "request",
            overflow="fold",
            min_width=None if column == "request" else widest,
        )
    for row in rows:
        table.add_row(*row)
    return table


#: Items of a for-each task ``show`` lists without ``--full``.
ITEMS_SHOWN = 10


def run_tree(
    run: RunRecord,
    tasks: dict[str, TaskResult],
    *,
    full: bool = False,
    nested: Sequence[RunSummary] = (),
) -> FittedTree:
    """The run's plan as a tree; a task carried out by a nested run shows that run's id
    (``foreman show`` it) under the task."""
    children = {child.parent_task_id: child for child in nested}
    title = Text.assemble(
        (literal(run.run_id), "bold"),
        " ",
        (run.status.value, STATUS_STYLE.get(run.status.value, "")),
        f" · {literal(_clip(run.request, 80))} · {run.usage.total_tokens:,} tokens · ",
        "cost unknown" if run.cost_usd is None else money(run.cost_usd),
    )

    def add_task(parent: Tree, task: Task) -> Tree:
        result = tasks.get(task.id)
        branch = parent.add(task_label(task, result.status.value if result else "not run"))
        if (child := children.get(task.id)) is not None:
            branch.add(
                Text.assemble(
                    ("nested run ", "dim"),
                    (literal(child.run_id), "bold"),
                    " ",
                    (child.status.value, STATUS_STYLE.get(child.status.value, "")),
                )
            )
        if task.for_each:
            add_items(branch, task)
        if result is not None:
            if result.output is not None:
                branch.add(safe_text(_show_output(result.output, full)))
            if result.error:
                branch.add(safe_text(result.error, style="red"))
            if result.unreviewed:
                branch.add(safe_text(f"not reviewed: {result.unreviewed}", style="yellow"))
            if result.waiting_on:
                waits = f"waits for approval of the tool call {result.waiting_on}"
                branch.add(safe_text(waits, style="magenta"))
            branch.add(
                safe_text(
                    f"{result.attempts} attempt(s), {result.usage.total_tokens} tokens, "
                    f"{result.latency:.1f}s, {result.model or '-'}",
                    style="dim",
                )
            )
        return branch

    def add_items(branch: Tree, task: Task) -> None:
        """A for-each task's items, in item order: those stored so far (on resume, the
        rest are expanded again from its dependency's stored output)."""
        ids = item_ids_of(task.id, tasks)
        shown = ids if full else ids[:ITEMS_SHOWN]
        for item_id in shown:
            item = tasks[item_id]
            label = Text.assemble(
                (literal(item_id), "bold"),
                " ",
                (item.status.value, STATUS_STYLE.get(item.status.value, "dim")),
            )
            if item.succeeded and item.output is not None:
                label.append(": ").append(literal(_show_output(item.output, full)))
            elif item.error:
                label.append(": ").append(literal(item.error), style="red")
            branch.add(label)
        if len(shown) < len(ids):
            more = f"… {len(ids) - len(shown)} more item(s) (--full shows them all)"
            branch.add(Text(more, style="dim"))

    def build(depth: int) -> Tree:
        tree = Tree(title)
        if run.plan is None:
            tree.add(Text("(no plan yet)", style="dim"))
            return tree
        # a task's output and figures nest one level below it
        return dag_tree(run.plan, tree, add_task, max_depth=max(1, depth - 1))

    return FittedTree(build)


def _show_output(output: object, full: bool) -> str:
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return text if full else _clip(text.strip().splitlines()[0] if text.strip() else "", 100)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(timestamp: float) -> str:
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
