"""What every command shares: the app, consoles, common options, error handling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from foreman.engine.orchestrator import Orchestrator
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
    RunStatus.crashed: 1,
    RunStatus.failed: 1,
    RunStatus.cancelled: 1,
}


JsonOpt = Annotated[bool, typer.Option("--json", help="Print every event as a JSON line instead.")]


T = TypeVar("T")


def build_orchestrator(settings: dict[str, Any], db: Path | None) -> Orchestrator:
    """An orchestrator from run settings (what `run` records and `resume` reuses)."""
    team = settings.get("team")
    orchestrator = Orchestrator(
        registry(Path(team) if team else None),
        model=settings.get("model"),
        planner_model=settings.get("planner_model"),
        concurrency=settings.get("concurrency", 8),
        max_tasks=settings.get("max_tasks", 8),
        validator=settings.get("validator"),
        max_revisions=settings.get("max_revisions", 1),
        assembly=settings.get("assembly", "synthesis"),
        auto_approve=settings.get("auto_approve"),
        store=open_store(db),
    )
    orchestrator.settings["team"] = team  # the CLI's own setting: resume re-reads the file
    return orchestrator


def open_store(db: Path | None, *, create: bool = True) -> SQLiteStore:
    return SQLiteStore(db, create=create)


def drive(orchestrator: Orchestrator, action: Callable[[Orchestrator], Awaitable[T]]) -> T:
    """Run ``action(orchestrator)`` to completion, then close the orchestrator."""

    async def closing() -> T:
        async with orchestrator:
            return await action(orchestrator)

    return asyncio.run(closing())


async def with_store(db: Path | None, action, *, create: bool = False):
    """``await action(store)`` on the run store, closing it afterwards.

    Commands that only look (or decide on an existing run) never create a store: a missing
    file is a clear error, not a new empty database."""
    store = open_store(db, create=create)
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
