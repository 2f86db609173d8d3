"""What every command shares: the app, consoles, common options, error handling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from foreman.engine.results import RunStatus
from foreman.errors import ForemanError
from foreman.store.sqlite import SQLiteStore
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

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar="FOREMAN_DB",
        help="Run store (SQLite file). Default: ~/.local/share/foreman/foreman.db.",
    ),
]

#: Exit codes by run status; see the module docstring of foreman.cli.app.
EXIT_CODES = {
    RunStatus.succeeded: 0,
    RunStatus.partial: 3,
    RunStatus.aborted: 4,
    RunStatus.waiting_approval: 5,
    RunStatus.interrupted: 130,
    RunStatus.running: 1,
}


def open_store(db: Path | None) -> SQLiteStore:
    return SQLiteStore(db)


async def with_store(db: Path | None, action):
    """``await action(store)`` on the run store, closing it afterwards."""
    store = open_store(db)
    try:
        return await action(store)
    finally:
        await store.aclose()


def registry(team: Path | None) -> Registry:
    return load_team(team) if team else Registry.default()


def guard(action):
    """Run ``action``; turn foreman errors and Ctrl-C into a message and an exit code."""
    try:
        return action()
    except ForemanError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
