"""Approvals from the command line: list, approve, reject, and the interactive prompt."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.prompt import Confirm, Prompt
from rich.text import Text

from foreman.cli.common import DbOpt, RunRefArg, app, guard, out, with_store
from foreman.cli.nesting import lineage, path_text
from foreman.cli.text import literal, safe_text
from foreman.errors import ApprovalError
from foreman.plan.foreach import made_task, no_task
from foreman.store.base import Approval, ApprovalStatus, Store

TaskArg = Annotated[
    str, typer.Argument(help="The task's id, e.g. t3, or a tool call's key, e.g. t3#2.")
]


@app.command()
def approvals(
    db: DbOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, exact inputs included.")
    ] = False,
) -> None:
    """List tasks waiting for a person's approval: run, task, worker, risk and instructions,
    then the exact input each worker would receive (what an approval covers)."""
    status = None if all_ else ApprovalStatus.pending

    async def load(store: Store) -> list[tuple[Approval, list[str]]]:
        return [(a, await lineage(store, a.run_id)) for a in await store.list_approvals(status)]

    found = guard(lambda: asyncio.run(with_store(db, load)))
    if json_out:  # run_path: from the top-level run down to the approval's (nested) run
        shown = [{**a.model_dump(mode="json"), "run_path": path} for a, path in found]
        print(json.dumps(shown, indent=2))
        return
    if not found:
        out.print("No approvals pending." if not all_ else "No approvals.")
        return
    for index, (approval, path) in enumerate(found):
        if index:
            out.print()
        print_approval(out, approval, path)


def print_approval(console: Console, approval: Approval, path: list[str] | None = None) -> None:
    """One approval: who and what on one line, the instructions, and the exact input the
    decision covers. The ids and the input are printed unwrapped (the terminal folds them):
    ids are copied into commands, and the input must read exactly as the worker gets it.
    ``path``: the runs from the top-level one down to the approval's, for a nested run."""
    path = path or [approval.run_id]
    style = {"high": "red", "medium": "yellow"}.get(approval.risk.value, "")
    header = Text.assemble(
        ("run ", "dim"),
        (literal(approval.run_id), "bold"),
        ("  task ", "dim"),
        (literal(approval.task_id), "bold"),
        ("  worker ", "dim"),
        (literal(approval.worker), "cyan"),
        "  ",
        (f"{approval.risk.value} risk", style),
        f"  {approval.status.value}",
    )
    console.print(header, soft_wrap=True)
    if len(path) > 1:
        console.print(Text.assemble(("nested run: ", "dim"), path_text(path)), soft_wrap=True)
    if approval.may_have_run:
        console.print(Text(MAY_HAVE_RUN, style="bold red"))
    if approval.tool is not None:  # a tool call: the exact tool and arguments
        console.print(Text.assemble(("tool: ", "dim"), (literal(approval.tool), "bold")))
        console.print(Text("arguments, exactly as the tool receives them:", style="dim"))
    else:
        console.print(Text.assemble(("instructions: ", "dim"), literal(approval.instructions)))
        console.print(Text("input, exactly as the worker receives it:", style="dim"))
    console.print(safe_text(approval.inputs), soft_wrap=True)
    if approval.note:
        console.print(Text.assemble(("note: ", "dim"), literal(approval.note)))
    if approval.status is ApprovalStatus.pending:
        run, task = approval.run_id, approval.task_id
        then = f"; then: foreman resume {path[0]}" if len(path) > 1 else ""
        console.print(
            safe_text(
                f"decide: foreman approve {run} {task} [--note ...] | "
                f"foreman reject {run} {task} --reason ...{then}",
                style="dim",
            ),
            soft_wrap=True,
        )


@app.command()
def approve(
    run: RunRefArg,
    task_id: TaskArg,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    db: DbOpt = None,
) -> None:
    """Approve a waiting task; then `foreman resume RUN` continues the run."""
    _decide(db, run, task_id, approved=True, note=note)


@app.command()
def reject(
    run: RunRefArg,
    task_id: TaskArg,
    reason: Annotated[str, typer.Option(help="Why; recorded and shown in the run.")],
    db: DbOpt = None,
) -> None:
    """Reject a waiting task: on resume it fails with REASON, under its worker's policy."""
    if not reason.strip():  # the task's error on resume: it must say something
        raise typer.BadParameter("say why the task is rejected.", param_hint="'--reason'")
    _decide(db, run, task_id, approved=False, note=reason)


def _decide(db, run: str, task_id: str, *, approved: bool, note: str | None) -> None:
    async def decide(store: Store) -> tuple[Approval, list[str]]:
        run_id = await store.resolve_run(run)
        try:
            decided = await store.decide(run_id, task_id, approved=approved, note=note)
        except ApprovalError:
            await _known_task(store, run_id, task_id)
            raise
        return decided, await lineage(store, run_id)

    decided, path = guard(lambda: asyncio.run(with_store(db, decide)))
    # A nested run goes on with its top-level run, which continues it where it paused.
    within = f" (nested in run {path[0]})" if len(path) > 1 else ""
    out.print(
        safe_text(
            f"Task {decided.task_id} of run {decided.run_id} {decided.status.value}. "
            f"Continue it with: foreman resume {path[0]}{within}"
        ),
        soft_wrap=True,
    )


async def _known_task(store: Store, run_id: str, task_id: str) -> None:
    """``ForemanError`` naming the run's tasks when ``task_id`` is none of them (nor an
    item of one, nor anything that asked for approval): a typo, not a task that did not
    ask."""
    record = await store.get_run(run_id)
    stored = await store.load_tasks(run_id)
    names = (task_id, task_id.rsplit("#", 1)[0])  # a tool call's approval is keyed TASK#N
    if any(made_task(record.plan, name, stored) for name in names):
        return
    if await store.get_approval(run_id, task_id) is not None:  # a tool call's, say
        return
    raise no_task(run_id, task_id, record.plan)


#: Said of a task whose approved execution started and never finished (the process died).
MAY_HAVE_RUN = (
    "Asked again: an approved execution of this task already started (it failed or was "
    "cut short); its side effects may already have happened."
)

#: Characters of a worker's input shown in the interactive prompt; `approvals` shows all.
SHOWN_INPUT = 2000


def _cut_note(approval: Approval) -> str:
    if len(approval.inputs) <= SHOWN_INPUT:
        return ""
    return (
        f"\n… {len(approval.inputs) - SHOWN_INPUT:,} more characters: "
        f"`foreman approvals` in another shell shows the whole input."
    )


class TerminalApprover:
    """Asks at the terminal, one approval at a time, without blocking the event loop."""

    def __init__(self, console: Console, pause=None) -> None:
        self.console = console
        self.pause = pause  # a context manager that hides live progress while asking
        self._lock = asyncio.Lock()

    async def __call__(self, approval: Approval) -> bool | None:
        async with self._lock:
            return await _in_daemon_thread(lambda: self._ask(approval))

    def _ask(self, approval: Approval) -> bool | None:
        """True or False as the person decides; None (decide later with `foreman approve`)
        when the terminal has no answer to give (Ctrl-D, stdin closed)."""
        try:
            return self._prompt(approval)
        except EOFError:
            self.console.print(
                safe_text(
                    f"No answer: {approval.task_id} waits for `foreman approve`.", style="dim"
                )
            )
            return None

    def _prompt(self, approval: Approval) -> bool:
        with self.pause() if self.pause else nullcontext():
            border = "red" if approval.risk.value == "high" else "yellow"
            self.console.print(
                Panel(
                    Text.assemble(
                        (literal(approval.task_id), "bold"),
                        " → ",
                        (literal(approval.worker), "cyan"),
                        f" ({approval.risk.value} risk)\n",
                        (f"{MAY_HAVE_RUN}\n" if approval.may_have_run else "", "bold red"),
                        f"{literal(approval.instructions)}\n\n",
                        ("Tool arguments:" if approval.tool else "Worker input:", "dim"),
                        f"\n{literal(approval.inputs[:SHOWN_INPUT])}",
                        (_cut_note(approval), "dim"),
                    ),
                    title="Approval needed",
                    border_style=border,
                )
            )
            if approval.risk.value == "high":  # an explicit act, not a stray Enter or "y"
                typed = Prompt.ask(
                    Text.assemble(
                        "High risk: type ",
                        (literal(approval.task_id), "bold"),
                        " to approve, anything else rejects",
                    ),
                    console=self.console,
                    default="",
                )
                approved = typed.strip() == approval.task_id
            else:
                what = "tool call" if approval.tool else "task"
                approved = Confirm.ask(f"Run this {what}?", console=self.console, default=False)
            if approved:
                approval.note = Prompt.ask("Note (optional)", console=self.console, default="")
            else:
                approval.note = Prompt.ask("Reason", console=self.console, default="rejected")
            approval.note = approval.note or None
            return approved


async def _in_daemon_thread(ask: Callable[[], bool | None]) -> bool | None:
    """Run a blocking prompt off the event loop, on a daemon thread.

    Not the default executor: on Ctrl-C, asyncio waits for executor threads before exiting,
    and a thread blocked reading the terminal would hang the exit until Enter is pressed.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool | None] = loop.create_future()

    def settle(action: Callable[[], None]) -> None:
        if not answer.done():
            action()

    def run() -> None:
        try:
            result = ask()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(settle, partial(answer.set_exception, exc))
        else:
            loop.call_soon_threadsafe(settle, lambda: answer.set_result(result))

    threading.Thread(target=run, name="foreman-approval", daemon=True).start()
    return await answer
