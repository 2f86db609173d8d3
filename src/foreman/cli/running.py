"""Executing a run (fresh or resumed) from the terminal: progress, approvals, exit code.

Three ways to show it: ``--json`` prints every event as a line; a terminal gets live
progress and asks for approvals interactively; anything else (a pipe, CI) gets one log
line per event on stderr and the answer on stdout, and risky tasks wait for
``foreman approve``.

SIGTERM is Ctrl-C: the run is marked interrupted (resumable) and the exit code is 130.
An error of the CLI itself (say, while showing an event) ends the run as ``failed`` and
is reported as one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.text import Text

from foreman.cli.approvals import TerminalApprover
from foreman.cli.common import EXIT_CODES, drive, err, guard, out
from foreman.cli.nesting import nested_waiting_note
from foreman.cli.render import LiveProgress, print_result
from foreman.cli.text import literal, safe_text
from foreman.engine.orchestrator import Orchestrator
from foreman.events import Event
from foreman.results import RunResult, RunStatus

Start = Callable[[Orchestrator, Callable[[Event], None]], Awaitable[RunResult]]
T = TypeVar("T")

#: The flag that sets each budget limit, for the hint an over-budget run ends with.
BUDGET_FLAGS = {
    "max_tokens": "--budget-tokens",
    "max_cost_usd": "--budget-usd",
    "max_seconds": "--budget-seconds",
    "max_calls": "--budget-calls",
}


def execute_run(orchestrator: Orchestrator, start: Start, *, json_lines: bool) -> None:
    """Run ``start(orchestrator, on_event)``, show it, and exit with the run's code."""
    seen: dict[str, str] = {}

    def remember(handler: Callable[[Event], None]) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            seen["run_id"] = event.run_id
            handler(event)

        return on_event

    terminated: list[signal.Signals] = []

    def show(handler: Callable[[Event], None]) -> RunResult:
        def action(o: Orchestrator) -> Awaitable[RunResult]:
            return _until_terminated(start(o, remember(handler)), terminated)

        return guard(lambda: drive(orchestrator, action))

    try:
        if json_lines:
            result = show(_print_json)
        elif out.is_terminal:
            with LiveProgress(err) as progress:
                if sys.stdin.isatty():
                    orchestrator.approve = TerminalApprover(err, pause=progress.paused)
                result = show(progress.handle)
            print_result(out, result)
        else:
            result = show(_log_line)
            if result.answer is not None:
                _print_answer(result.answer)
            elif result.error:
                err.print(safe_text(result.error), soft_wrap=True)
            if result.status is not RunStatus.waiting_approval:  # that one is told below
                err.print(Text(f"Run {result.run_id}: {result.status.value}"), soft_wrap=True)
    except asyncio.CancelledError:
        if not terminated:
            raise
        _resumable(seen, Text("terminated", style="yellow"))
        raise typer.Exit(130) from None
    except typer.Exit as exit_:
        if exit_.exit_code == 130:
            _resumable(seen)
        elif exit_.exit_code == 1 and "run_id" in seen:  # the run was recorded as failed
            run_id = seen["run_id"]
            err.print(Text(f"Run {run_id}: failed (foreman show {run_id})"), soft_wrap=True)
        raise
    except Exception as exc:  # a bug of the CLI's own; a run it broke is recorded as failed
        err.print(
            Text.assemble(("error:", "bold red"), literal(f" {type(exc).__name__}: {exc}")),
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    if result.status is RunStatus.over_budget:
        err.print(
            safe_text(
                f"Run {result.run_id} stopped at its budget ({result.error}). Raise the limit "
                f"to finish it: `foreman resume {result.run_id} "
                f"{BUDGET_FLAGS.get(result.budget_limit or '', '--budget-...')} ...`."
            ),
            soft_wrap=True,
        )
    if result.status is RunStatus.stalled:
        err.print(
            safe_text(
                f"Run {result.run_id}: {result.error or 'replanning stalled'}. `foreman show "
                f"{result.run_id}` shows the plan versions; `foreman resume {result.run_id}` "
                "runs the rest of the latest one."
            ),
            soft_wrap=True,
        )
    if result.status is RunStatus.waiting_approval:
        waiting = [
            t.waiting_on or t.task_id for t in result.tasks.values() if t.status.value == "waiting"
        ]
        err.print(
            safe_text(
                f"Run {result.run_id} is waiting for approval of {', '.join(waiting)}. "
                f"Decide with `foreman approve {result.run_id} TASK` or `foreman reject "
                f"{result.run_id} TASK --reason ...`, then `foreman resume {result.run_id}`."
                + nested_waiting_note(orchestrator, result)
            ),
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_CODES[result.status])


def _resumable(seen: dict[str, str], note: Text | None = None) -> None:
    if note is not None:
        err.print(note)
    if "run_id" in seen:
        run_id = seen["run_id"]
        err.print(Text(f"Run {run_id} is resumable: foreman resume {run_id}"), soft_wrap=True)


async def _until_terminated(job: Awaitable[T], terminated: list[signal.Signals]) -> T:
    """Await ``job``; a SIGTERM meanwhile cancels it as Ctrl-C would (noted in
    ``terminated``), so the run is marked interrupted before the process exits."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_sigterm() -> None:
        terminated.append(signal.SIGTERM)
        main.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError):  # no signals here (Windows, not main thread)
        return await job
    try:
        return await job
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGTERM)


def _print_json(event: Event) -> None:
    try:
        sys.stdout.write(event.model_dump_json() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): the run goes on, and is recorded
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_answer(answer: str) -> None:
    try:
        print(answer, flush=True)
    except BrokenPipeError:  # the reader left: the run is recorded, its status still said
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _log_line(event: Event) -> None:
    """``type [purpose] [task]``: a retried planning or synthesis call has no task."""
    about = (getattr(event, name, None) for name in ("purpose", "task_id"))
    detail = " ".join(str(value) for value in about if value)
    err.print(Text.assemble((event.type, "dim"), literal(f" {detail}".rstrip())), highlight=False)
