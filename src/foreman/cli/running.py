"""Executing a run (fresh or resumed) from the terminal: progress, approvals, exit code.

Three ways to show it: ``--json`` prints every event as a line; a terminal gets live
progress and asks for approvals interactively; anything else (a pipe, CI) gets one log
line per event on stderr and the answer on stdout, and risky tasks wait for
``foreman approve``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import typer
from rich.text import Text

from foreman.cli.approvals import TerminalApprover
from foreman.cli.common import EXIT_CODES, drive, err, guard, out
from foreman.cli.render import LiveProgress, print_result
from foreman.engine.orchestrator import Orchestrator
from foreman.engine.results import RunResult, RunStatus
from foreman.events import Event

Start = Callable[[Orchestrator, Callable[[Event], None]], Awaitable[RunResult]]


def execute_run(orchestrator: Orchestrator, start: Start, *, json_lines: bool) -> None:
    """Run ``start(orchestrator, on_event)``, show it, and exit with the run's code."""
    seen: dict[str, str] = {}

    def remember(handler: Callable[[Event], None]) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            seen["run_id"] = event.run_id
            handler(event)

        return on_event

    try:
        if json_lines:
            result = guard(lambda: drive(orchestrator, lambda o: start(o, remember(_print_json))))
        elif out.is_terminal:
            with LiveProgress(err) as progress:
                if sys.stdin.isatty():
                    orchestrator.approve = TerminalApprover(err, pause=progress.paused)
                result = guard(
                    lambda: drive(orchestrator, lambda o: start(o, remember(progress.handle)))
                )
            print_result(out, result)
        else:
            result = guard(lambda: drive(orchestrator, lambda o: start(o, remember(_log_line))))
            if result.answer is not None:
                print(result.answer)
            elif result.error:
                err.print(Text(result.error), soft_wrap=True)
            if result.status is not RunStatus.waiting_approval:  # that one is told below
                err.print(Text(f"Run {result.run_id}: {result.status.value}"), soft_wrap=True)
    except typer.Exit as exit_:
        if exit_.exit_code == 130 and "run_id" in seen:
            run_id = seen["run_id"]
            err.print(Text(f"Run {run_id} is resumable: foreman resume {run_id}"), soft_wrap=True)
        raise
    if result.status is RunStatus.waiting_approval:
        waiting = [t.task_id for t in result.tasks.values() if t.status.value == "waiting"]
        err.print(
            Text(
                f"Run {result.run_id} is waiting for approval of {', '.join(waiting)}. "
                f"Decide with `foreman approve {result.run_id} TASK` or `foreman reject "
                f"{result.run_id} TASK --reason ...`, then `foreman resume {result.run_id}`."
            ),
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_CODES[result.status])


def _print_json(event: Event) -> None:
    sys.stdout.write(event.model_dump_json() + "\n")
    sys.stdout.flush()


def _log_line(event: Event) -> None:
    task = getattr(event, "task_id", "")
    err.print(Text.assemble((event.type, "dim"), f" {task}".rstrip()))
