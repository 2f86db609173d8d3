"""The ``foreman`` command: run, plan, workers.

Exit codes: 0 the run succeeded; 1 a foreman error (no valid plan, bad team file...);
2 bad usage; 3 the run finished with a partial answer; 4 the run was aborted; 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from foreman.cli.render import LiveProgress, plan_tree, print_result, workers_table
from foreman.engine.orchestrator import Orchestrator
from foreman.engine.results import RunResult, RunStatus
from foreman.errors import ForemanError
from foreman.events import Event
from foreman.workers.registry import Registry, load_team

app = typer.Typer(
    help="foreman: plan a request, route subtasks to specialist workers, run them in "
    "parallel, check quality and assemble one answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="FOREMAN_MODEL",
        help="Default model: anthropic:<id>, openai:<id>, local or local:<file.gguf>. "
        "Without it: Anthropic if ANTHROPIC_API_KEY is set, else OpenAI if OPENAI_API_KEY "
        "is set, else the bundled local model.",
    ),
]
PlannerOpt = Annotated[
    str | None, typer.Option("--planner-model", help="Model for planning only (a strong one).")
]
TeamOpt = Annotated[
    Path | None,
    typer.Option("--team", "-t", help="Team file (YAML or TOML) defining the workers."),
]
MaxTasksOpt = Annotated[int, typer.Option("--max-tasks", min=1, help="Most tasks in a plan.")]

EXIT_CODES = {RunStatus.succeeded: 0, RunStatus.partial: 3, RunStatus.aborted: 4}


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
    orchestrator = _guard(
        lambda: Orchestrator(
            _registry(team),
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
        result = _guard(lambda: asyncio.run(_run(orchestrator, request, _print_json)))
    elif out.is_terminal:
        with LiveProgress(err) as progress:
            result = _guard(lambda: asyncio.run(_run(orchestrator, request, progress.handle)))
        print_result(out, result)
    else:
        result = _guard(lambda: asyncio.run(_run(orchestrator, request, _log_line)))
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
    orchestrator = _guard(
        lambda: Orchestrator(
            _registry(team), model=model, planner_model=planner_model, max_tasks=max_tasks
        )
    )
    the_plan, usage = _guard(lambda: asyncio.run(_plan(orchestrator, request)))
    if json_out:
        print(the_plan.model_dump_json(indent=2))
    else:
        out.print(plan_tree(the_plan))
        out.print(f"[dim]{usage.input_tokens} in / {usage.output_tokens} out tokens[/]")


@app.command()
def workers(team: TeamOpt = None) -> None:
    """List the workers in the registry (the built-in team, or --team)."""
    out.print(workers_table(_guard(lambda: _registry(team))))


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


def _registry(team: Path | None) -> Registry:
    return load_team(team) if team else Registry.default()


def _print_json(event: Event) -> None:
    sys.stdout.write(event.model_dump_json() + "\n")
    sys.stdout.flush()


def _log_line(event: Event) -> None:
    task = getattr(event, "task_id", "")
    err.print(f"[dim]{event.type}[/] {task}".rstrip(), highlight=False)


def _guard(action):
    """Run ``action``; turn foreman errors and Ctrl-C into a message and an exit code."""
    try:
        return action()
    except ForemanError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def main() -> None:
    app()
