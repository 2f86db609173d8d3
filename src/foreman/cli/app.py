"""The ``foreman`` command: run, plan, workers.

Exit codes: 0 the run succeeded; 1 a foreman error (no valid plan, bad team file...);
2 bad usage; 3 the run finished with a partial answer; 4 the run was aborted; 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from foreman.cli.common import (
    EXIT_CODES,
    MaxTasksOpt,
    ModelOpt,
    PlannerOpt,
    TeamOpt,
    app,
    err,
    guard,
    out,
    registry,
)
from foreman.cli.render import LiveProgress, plan_tree, print_result, workers_table
from foreman.engine.orchestrator import Orchestrator
from foreman.engine.results import RunResult
from foreman.events import Event


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: ModelOpt = None,
    planner_model: PlannerOpt = None,
    team: TeamOpt = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Tasks running at once.")
    ] = 8,
    max_tasks: MaxTasksOpt = 8,
    validator: Annotated[
        str | None,
        typer.Option(help="Worker that reviews every result before assembly (quality gate)."),
    ] = None,
    max_revisions: Annotated[
        int, typer.Option(min=0, help="Revisions a rejected result may get.")
    ] = 1,
    assembly: Annotated[
        str, typer.Option(help="'synthesis' (a model writes the answer) or 'concat'.")
    ] = "synthesis",
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print every event as a JSON line instead.")
    ] = False,
) -> None:
    """Plan REQUEST, run it on the workers with live progress, and print the answer."""
    orchestrator = guard(
        lambda: Orchestrator(
            registry(team),
            model=model,
            planner_model=planner_model,
            concurrency=concurrency,
            max_tasks=max_tasks,
            validator=validator,
            max_revisions=max_revisions,
            assembly=assembly,  # type: ignore[arg-type]
        )
    )
    if json_lines:
        result = guard(lambda: asyncio.run(_run(orchestrator, request, _print_json)))
    elif out.is_terminal:
        with LiveProgress(err) as progress:
            result = guard(lambda: asyncio.run(_run(orchestrator, request, progress.handle)))
        print_result(out, result)
    else:
        result = guard(lambda: asyncio.run(_run(orchestrator, request, _log_line)))
        print(result.answer if result.answer is not None else result.error)
    raise typer.Exit(EXIT_CODES[result.status])


@app.command()
def plan(
    request: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: ModelOpt = None,
    planner_model: PlannerOpt = None,
    team: TeamOpt = None,
    max_tasks: MaxTasksOpt = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show the plan foreman would run for REQUEST, as a tree, without running it."""
    orchestrator = guard(
        lambda: Orchestrator(
            registry(team), model=model, planner_model=planner_model, max_tasks=max_tasks
        )
    )
    the_plan, usage = guard(lambda: asyncio.run(_plan(orchestrator, request)))
    if json_out:
        print(the_plan.model_dump_json(indent=2))
    else:
        out.print(plan_tree(the_plan))
        out.print(f"[dim]{usage.input_tokens} in / {usage.output_tokens} out tokens[/]")


@app.command()
def workers(team: TeamOpt = None) -> None:
    """List the workers in the registry (the built-in team, or --team)."""
    out.print(workers_table(guard(lambda: registry(team))))


async def _run(orchestrator: Orchestrator, request: str, on_event) -> RunResult:
    try:
        return await orchestrator.run(request, on_event=on_event)
    finally:
        await orchestrator.aclose()


async def _plan(orchestrator: Orchestrator, request: str):
    try:
        return await orchestrator.plan(request)
    finally:
        await orchestrator.aclose()


def _print_json(event: Event) -> None:
    sys.stdout.write(event.model_dump_json() + "\n")
    sys.stdout.flush()


def _log_line(event: Event) -> None:
    task = getattr(event, "task_id", "")
    err.print(f"[dim]{event.type}[/] {task}".rstrip(), highlight=False)


def main() -> None:
    app()


# Registered after run, plan and workers, so that --help lists those first.
from foreman.cli import approvals, history  # noqa: E402, F401
