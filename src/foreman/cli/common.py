"""What every command shares: the app, consoles, common options, error handling."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from foreman.cli import observing
from foreman.cli.text import literal
from foreman.cli.tool_flags import enable_builtin_tools
from foreman.engine.orchestrator import Orchestrator
from foreman.engine.settings import RunSettings
from foreman.errors import ForemanError
from foreman.ledger.budget import budget_from
from foreman.plan.schema import MAX_TASKS_LIMIT
from foreman.results import RunStatus
from foreman.store.sqlite import SQLiteStore
from foreman.workers.registry import Registry, load_team

app = typer.Typer(
    help="foreman: plan a request, route subtasks to specialist workers, run them in "
    "parallel, check quality and assemble one answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Console(Console):
    """A console that stops writing when its reader leaves (``| head``) and lets the
    command go on: rich's default exits at once (and silences stdout whichever stream it
    was), which in the middle of a run stopped the run."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())


out = _Console()
err = _Console(stderr=True)

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
MaxTasksOpt = Annotated[
    int,
    typer.Option("--max-tasks", min=1, max=MAX_TASKS_LIMIT, help="Most tasks in a plan."),
]


def _positive(what: str, example: str) -> Callable[[float | None], float | None]:
    """An option callback refusing zero, negatives, nan and infinity (``min=0`` would let
    0 through and show ``x>=0`` in ``--help``)."""

    def check(value: float | None) -> float | None:
        if value is not None and not 0 < value < math.inf:
            raise typer.BadParameter(
                f"must be a positive {what}, greater than 0 (e.g. {example}), not {value}."
            )
        return value

    return check


PlanBudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--plan-budget-usd",
        callback=_positive("amount of dollars", "0.05"),
        help="Dollars the plan may be estimated to cost; the planner plans within it, and a "
        "plan over it is sent back to the planner.",
    ),
]
RequestArg = Annotated[
    str,
    typer.Argument(
        help="What you want done, in plain words; '-' reads it from stdin, '@FILE' from a file.",
        metavar="REQUEST",
        show_default=False,
    ),
]

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
    RunStatus.over_budget: 6,
    RunStatus.stalled: 7,
}


BudgetTokensOpt = Annotated[
    int | None,
    typer.Option("--budget-tokens", min=1, help="Most tokens the run may spend (all calls)."),
]
BudgetUsdOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-usd",
        callback=_positive("amount of dollars", "0.05"),
        help="Most US dollars the run may spend.",
    ),
]
BudgetSecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-seconds",
        callback=_positive("number of seconds", "600"),
        help="Most seconds the run may execute (not while paused).",
    ),
]
BudgetCallsOpt = Annotated[
    int | None,
    typer.Option("--budget-calls", min=1, help="Most model calls, retries included."),
]


class OnBudget(StrEnum):
    """What calls in flight do when a budget limit is reached (``--on-budget``)."""

    finish = "finish"
    cancel = "cancel"


OnBudgetOpt = Annotated[
    OnBudget | None,
    typer.Option(
        "--on-budget",
        help="At a budget limit no call starts; running calls 'finish' (default) or are "
        "'cancel'led.",
    ),
]


def budget_flags(
    tokens: int | None,
    usd: float | None,
    seconds: float | None,
    calls: int | None,
    on_limit: OnBudget | None,
) -> dict[str, Any]:
    """The budget fields the ``--budget-*`` flags set (only those given), checked."""
    given = {
        "max_tokens": tokens,
        "max_cost_usd": usd,
        "max_seconds": seconds,
        "max_calls": calls,
        "on_limit": on_limit.value if on_limit else None,
    }
    flags = {key: value for key, value in given.items() if value is not None}
    try:
        budget_from(flags, "budget")
    except ForemanError as exc:
        usage_error(str(exc).removeprefix("budget: "), "--budget-*")
    return flags


JsonOpt = Annotated[bool, typer.Option("--json", help="Print every event as a JSON line instead.")]


class Assembly(StrEnum):
    """How the answer is put together (``--assembly``)."""

    synthesis = "synthesis"
    concat = "concat"


class Replan(StrEnum):
    """When the orchestrator revises the plan (``--replan``; docs/replanning.md)."""

    never = "never"
    on_hint = "on-hint"
    always = "always"


ReplanOpt = Annotated[
    Replan | None,
    typer.Option(
        help="Revise the plan as results come in: 'on-hint' when a worker's result asks "
        "for it, 'always' after every task, 'never' (default, or the team file's replan:).",
        show_default=False,
    ),
]
MaxReplansOpt = Annotated[
    int | None,
    typer.Option(
        "--max-replans",
        min=0,
        help="Most plan revisions per run (default 3, or the team file's).",
        show_default=False,
    ),
]


class Mode(StrEnum):
    """How a run is driven (``--mode``): a plan up front, or a tool-calling orchestrator."""

    plan = "plan"
    delegate = "delegate"


class RouterChoice(StrEnum):
    """Who picks each task's worker (``--router``; docs/routing.md)."""

    planner = "planner"
    llm = "llm"
    embedding = "embedding"


RouterOpt = Annotated[
    RouterChoice | None,
    typer.Option(
        help="Who picks each task's worker: 'planner' (its own choice, the default), 'llm' "
        "(one model call per task) or 'embedding' (no model call: similarity to the workers' "
        "descriptions and examples). A team file's router: applies when not given.",
        show_default=False,
    ),
]
RouterFallbackOpt = Annotated[
    str | None,
    typer.Option(
        "--router-fallback",
        metavar="WORKER",
        help="The worker a router (--router llm|embedding, or a team file's router:) sends "
        "a task that no worker confidently matches.",
        show_default=False,
    ),
]


class AutoApprove(StrEnum):
    """Risk levels ``--auto-approve`` accepts: high risk always asks a person."""

    low = "low"
    medium = "medium"


T = TypeVar("T")


def build_orchestrator(settings: Mapping[str, Any], db: Path | None) -> Orchestrator:
    """An orchestrator from run settings (what `run` records and `resume` reuses).

    The budget: the team file's, under what the run recorded, under the fields the
    ``--budget-*`` flags set (``settings["budget"]`` holds them over the recorded one).
    Replanning likewise: the team file's ``replan:`` under the run's or the flags'.
    Settings the record lacks take ``RunSettings``'s defaults, the CLI's own.
    """
    team = settings.get("team")
    workers = registry(Path(team) if team else None)
    fields = {
        **(workers.budget.model_dump() if workers.budget else {}),
        **(settings.get("budget") or {}),
    }
    budget = budget_from(fields, "budget") if fields else None
    team_replan = workers.replan
    replan = {  # the team file's replan: section, under what the run recorded or was given
        "replan": team_replan.policy if team_replan else None,
        "max_replans": team_replan.max_replans if team_replan else None,
    }
    replan.update((key, settings[key]) for key in replan if settings.get(key) is not None)
    given = {key: value for key, value in settings.items() if key not in replan}
    replan = {key: value for key, value in replan.items() if value is not None}
    config = RunSettings.model_validate({**given, **replan, "budget": budget})
    enable_builtin_tools(workers, config)
    return Orchestrator.from_settings(
        config, workers, store=open_store(db), observers=observing.observers()
    )


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


RunRefArg = Annotated[
    str, typer.Argument(help="The run: its id, a unique prefix of it, or 'last' (the newest).")
]


def run_ref(db: Path | None, ref: str) -> str:
    """The id of the run ``ref`` names (id, unique prefix or ``last``), or exit with why not."""
    return guard(lambda: asyncio.run(with_store(db, lambda store: store.resolve_run(ref))))


def registry(team: Path | None) -> Registry:
    return load_team(team) if team else Registry.default()


def usage_error(message: str, param: str) -> NoReturn:
    """Exit 2 with ``message``, reported like any other bad option or argument."""
    raise typer.BadParameter(message, param_hint=param)


def read_request(value: str) -> str:
    """The request: the argument itself, stdin for ``-``, or a file's contents for ``@FILE``.

    Rejected before anything is planned or spent: text that is not UTF-8 (a shell hands
    Python undecodable bytes as lone surrogates) and a request with nothing but whitespace.
    """
    if value == "-":
        text = _decode(sys.stdin.buffer.read(), "the request read from stdin")
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            data = path.read_bytes()
        except OSError as exc:
            usage_error(f"cannot read the request file {path}: {exc.strerror or exc}.", "REQUEST")
        text = _decode(data, f"the request file {path}")
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            usage_error("the request is not valid UTF-8 text.", "REQUEST")
        text = value
    if not text.strip():
        usage_error("the request is empty; say what you want done.", "REQUEST")
    return text


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte {data[exc.start]:#04x} at offset {exc.start}"
        usage_error(f"{what} is not UTF-8 text ({where}).", "REQUEST")


def guard(action):
    """Run ``action``; turn foreman errors and Ctrl-C into a message and an exit code."""
    try:
        return action()
    except ForemanError as exc:
        err.print(Text.assemble(("error:", "bold red"), " ", literal(str(exc))), soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="yellow"))
        raise typer.Exit(130) from None
