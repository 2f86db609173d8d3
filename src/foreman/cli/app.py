"""The ``foreman`` command: run, plan, workers, resume, replay (and, registered from their
own modules, runs, show, approvals, approve, reject, cancel, rm, doctor).

Exit codes: 0 the run succeeded; 1 a foreman error (no valid plan, bad team file, unknown
run...); 2 bad usage; 3 a partial answer; 4 the run was aborted; 5 the run waits for
approval; 6 the run stopped at its budget (resumable with a raised one); 7 replanning
stalled (what finished is assembled; resumable); 130 interrupted (Ctrl-C): resumable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from foreman import __version__
from foreman.cli import observing
from foreman.cli.common import (
    Assembly,
    AutoApprove,
    BudgetCallsOpt,
    BudgetSecondsOpt,
    BudgetTokensOpt,
    BudgetUsdOpt,
    DbOpt,
    JsonOpt,
    MaxReplansOpt,
    MaxTasksOpt,
    Mode,
    ModelOpt,
    OnBudgetOpt,
    PlanBudgetOpt,
    PlannerOpt,
    ReplanOpt,
    RequestArg,
    RouterFallbackOpt,
    RouterOpt,
    RunRefArg,
    TeamOpt,
    app,
    budget_flags,
    build_orchestrator,
    drive,
    err,
    guard,
    open_store,
    out,
    read_request,
    registry,
    usage_error,
    with_store,
)
from foreman.cli.nesting import refuse_nested
from foreman.cli.render import estimate_table, plan_json, plan_tree, worker_json, workers_table
from foreman.cli.running import execute_run
from foreman.cli.text import literal, safe_text
from foreman.cli.tool_flags import AllowToolOpt, ToolRootOpt, tool_flags, toolbox_line
from foreman.engine.orchestrator import Orchestrator, refuse_finished
from foreman.engine.settings import DEFAULTS
from foreman.models.deprecation import show_warnings_as_lines
from foreman.patterns.team import team_pattern
from foreman.store.base import RunRecord, Store

DEFAULT_ASSEMBLY = Assembly(DEFAULTS.assembly)


def _print_version(value: bool) -> None:
    if value:
        print(f"foreman {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log each event and model call to stderr; -vv adds prompts and outputs.",
        ),
    ] = 0,
    log_file: Annotated[
        Path | None,
        typer.Option(help="Write the log to this file instead of stderr (INFO unless -vv)."),
    ] = None,
) -> None:
    """Options of ``foreman`` itself, before any command (the app's help says the rest).

    Traces go to OpenTelemetry when the standard OTEL_* variables ask for export."""
    observing.configure(verbose, log_file)
    ctx.call_on_close(observing.close)


@app.command()
def run(
    request: RequestArg,
    model: ModelOpt = None,
    planner_model: PlannerOpt = None,
    team: TeamOpt = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Tasks running at once.")
    ] = DEFAULTS.concurrency,
    max_tasks: MaxTasksOpt = DEFAULTS.max_tasks,
    validator: Annotated[
        str | None,
        typer.Option(help="Worker that reviews every result before assembly (quality gate)."),
    ] = None,
    max_revisions: Annotated[
        int, typer.Option(min=0, help="Revisions a rejected result may get.")
    ] = DEFAULTS.max_revisions,
    assembly: Annotated[
        Assembly, typer.Option(help="'synthesis' (a model writes the answer) or 'concat'.")
    ] = DEFAULT_ASSEMBLY,
    auto_approve: Annotated[
        AutoApprove | None,
        typer.Option(help="'medium': run medium-risk workers without asking (high always asks)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Seconds per model call, for workers that set none, planning, reviews and "
            "synthesis; a call that takes longer is retried.",
        ),
    ] = None,
    plan_budget_usd: PlanBudgetOpt = None,
    record_prompts: Annotated[
        bool,
        typer.Option(
            help="Keep every call's prompt and output in the run store, for `foreman show "
            "RUN TASK`; --no-record-prompts for sensitive data (tokens and costs are kept).",
        ),
    ] = DEFAULTS.record_prompts,
    budget_tokens: BudgetTokensOpt = None,
    budget_usd: BudgetUsdOpt = None,
    budget_seconds: BudgetSecondsOpt = None,
    budget_calls: BudgetCallsOpt = None,
    on_budget: OnBudgetOpt = None,
    replan: ReplanOpt = None,
    max_replans: MaxReplansOpt = None,
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="'plan' (default): plan the whole run first, then run it. 'delegate': the "
            "orchestrator model delegates to the workers as tools, turn by turn, in parallel "
            "within a turn, until it answers (a team file's mode: applies when not given).",
        ),
    ] = None,
    max_turns: Annotated[
        int,
        typer.Option(min=1, help="Turns a delegating orchestrator may take (--mode delegate)."),
    ] = DEFAULTS.max_turns,
    pattern: Annotated[
        str | None,
        typer.Option(
            help="Run the team file's pattern NAME (a pipeline, fan-out or "
            "generator-evaluator) on REQUEST instead of planning it.",
        ),
    ] = None,
    context_budget: Annotated[
        int | None,
        typer.Option(
            min=256,
            help="Tokens of results the orchestrator may read (synthesis, plan revisions, "
            "delegation turns); past it, older results reach it as summaries (workers still "
            "get full outputs).",
        ),
    ] = None,
    max_depth: Annotated[
        int,
        typer.Option(
            min=0,
            help="How deep teams used as workers (a team file's `team:` entries) may nest "
            "their runs.",
        ),
    ] = DEFAULTS.max_depth,
    router: RouterOpt = None,
    router_fallback: RouterFallbackOpt = None,
    memory: Annotated[
        bool | None,
        typer.Option(
            "--memory/--no-memory",
            help="Remember every worker's output in the run store and show later workers "
            "(this run's and later runs') the relevant ones (docs/memory.md; `foreman memory` "
            "lists and deletes them). Default: the team file's memory:, else off.",
            show_default=False,
        ),
    ] = None,
    allow_tool: AllowToolOpt = None,
    tool_root: ToolRootOpt = None,
    db: DbOpt = None,
    json_lines: JsonOpt = False,
) -> None:
    """Plan REQUEST, run it on the workers with live progress, and print the answer.

    With --mode delegate the orchestrator delegates to the workers turn by turn instead
    (docs/delegation.md); --max-tasks bounds its delegations. --router llm|embedding
    has a router pick each task's worker instead of the planner (docs/routing.md). Every
    task is checkpointed to the run store; `foreman resume RUN` continues a run that was
    interrupted, crashed, paused for approval, or stopped at its budget (--budget-* flags,
    or a team file's budget: section). Workers call tools only when a run enables them:
    --allow-tool for the built-in ones (docs/builtin-tools.md), a team file's tools:
    section for others."""
    request = read_request(request)
    budget = budget_flags(budget_tokens, budget_usd, budget_seconds, budget_calls, on_budget)
    known = guard(lambda: registry(team))
    if validator is not None and validator not in known:
        usage_error(
            f"no worker named {validator!r} to validate with; known workers: "
            f"{', '.join(known.names())}.",
            "--validator",
        )
    if router_fallback is not None and router_fallback not in known:
        usage_error(
            f"no worker named {router_fallback!r} to fall back to; known workers: "
            f"{', '.join(known.names())}.",
            "--router-fallback",
        )
    team_router = known.router.kind if known.router else "planner"
    if router_fallback is not None and (router.value if router else team_router) == "planner":
        usage_error(
            "--router-fallback applies to a router: add --router embedding (or llm).",
            "--router-fallback",
        )
    if pattern is not None and mode is not None and mode.value == "delegate":
        usage_error("--pattern runs the pattern's own plan; drop --mode delegate.", "--mode")
    if mode is not None and mode.value == "delegate":  # flags it would silently ignore
        if replan is not None and replan.value != "never":
            usage_error(
                "--replan revises a plan, and a delegating orchestrator has none (it "
                "decides each turn): drop --replan or --mode delegate.",
                "--replan",
            )
        if assembly.value != "synthesis":
            usage_error(
                "--assembly puts a plan's results together, and a delegating "
                "orchestrator writes the answer itself: drop --assembly or --mode delegate.",
                "--assembly",
            )
    settings = {
        "model": model,
        "planner_model": planner_model,
        "team": str(team.resolve()) if team else None,
        "concurrency": concurrency,
        "max_tasks": max_tasks,
        "validator": validator,
        "max_revisions": max_revisions,
        "assembly": assembly.value,
        "auto_approve": auto_approve.value if auto_approve else None,
        "timeout": timeout,
        "plan_budget_usd": plan_budget_usd,
        "record_prompts": record_prompts,
        "budget": budget,
        "replan": replan.value if replan else None,
        "max_replans": max_replans,
        # a pattern is a plan: a team file's `mode: delegate` does not apply to it
        "mode": "plan" if pattern is not None else mode.value if mode else None,
        "max_turns": max_turns,
        "context_budget": context_budget,
        "max_depth": max_depth,
        "router": router.value if router else None,
        "router_fallback": router_fallback,
        "memory": memory,
        **tool_flags(allow_tool, tool_root),
    }
    orchestrator = guard(lambda: build_orchestrator(settings, db))
    plan = (
        guard(lambda: team_pattern(orchestrator.registry, pattern).plan_for(request))
        if pattern is not None
        else None
    )
    execute_run(
        orchestrator,
        lambda o, on_event: o.run(request, plan=plan, on_event=on_event),
        json_lines=json_lines,
    )


@app.command()
def resume(
    run: RunRefArg,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Override the run's default model.")
    ] = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_usd: BudgetUsdOpt = None,
    budget_seconds: BudgetSecondsOpt = None,
    budget_calls: BudgetCallsOpt = None,
    on_budget: OnBudgetOpt = None,
    db: DbOpt = None,
    json_lines: JsonOpt = False,
) -> None:
    """Continue a run that crashed, was interrupted, aborted, waits for approval or
    stopped at its budget.

    Tasks that finished are never executed again; the run's own settings (team, models,
    limits, budget) are reused. A --budget-* flag replaces that limit, and the run keeps
    the raised one for later resumes; the budget counts every execution of the run."""
    budget = budget_flags(budget_tokens, budget_usd, budget_seconds, budget_calls, on_budget)
    record = guard(lambda: asyncio.run(with_store(db, lambda store: _record(store, run))))
    guard(lambda: refuse_finished(record))  # before its models are built (and need keys)
    if record.parent_run_id is not None:  # its team is its parent's to rebuild
        guard(lambda: asyncio.run(with_store(db, lambda store: refuse_nested(store, record))))
    run_id = record.run_id
    settings = {**record.settings, **({"model": model} if model else {})}
    settings["budget"] = {**(record.settings.get("budget") or {}), **budget}
    orchestrator = guard(lambda: build_orchestrator(settings, db))
    raised = orchestrator.budget if budget else None  # recorded: the run's budget from now on
    execute_run(
        orchestrator,
        lambda o, on_event: o.resume(run_id, budget=raised, on_event=on_event),
        json_lines=json_lines,
    )


@app.command()
def replay(
    run: RunRefArg,
    task_id: Annotated[str, typer.Argument(help="The task to run again, e.g. t2.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Try another model for this worker.")
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the TaskResult as JSON.")] = False,
) -> None:
    """Re-run one task's worker on its recorded input, for debugging; the run is untouched."""
    record = guard(lambda: asyncio.run(with_store(db, lambda store: _record(store, run))))
    run_id = record.run_id
    # With --model, the run's own default model is not needed (nor its credentials).
    settings = {**record.settings, **({"model": model} if model else {})}
    orchestrator = guard(lambda: build_orchestrator(settings, db))

    result = guard(lambda: drive(orchestrator, lambda o: o.replay(run_id, task_id, model=model)))
    if json_out:
        print(result.model_dump_json(indent=2))
    elif result.succeeded:
        out.print(
            Text.assemble(
                (literal(task_id), "bold"),
                literal(f" replayed on {result.model} ({result.usage.total_tokens} tokens):"),
            )
        )
        output = result.model_dump(mode="json")["output"]  # a structured output is a model
        text = output if isinstance(output, str) else json.dumps(output, indent=2)
        print(literal(text) if sys.stdout.isatty() else text)  # a pipe gets it byte-exact
    else:
        failed = Text.assemble(
            (literal(f"{task_id} failed again:"), "red"), literal(f" {result.error}")
        )
        err.print(failed, soft_wrap=True)
    raise typer.Exit(0 if result.succeeded else 1)


@app.command()
def plan(
    request: RequestArg,
    model: ModelOpt = None,
    planner_model: PlannerOpt = None,
    team: TeamOpt = None,
    max_tasks: MaxTasksOpt = DEFAULTS.max_tasks,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Tasks running at once (time).")
    ] = DEFAULTS.concurrency,
    validator: Annotated[
        str | None, typer.Option(help="Worker that would review every result (its cost).")
    ] = None,
    plan_budget_usd: PlanBudgetOpt = None,
    db: DbOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the plan and its estimate as JSON.")
    ] = False,
) -> None:
    """Show the plan foreman would run for REQUEST, as a tree, with each task's estimated
    cost and time and the totals, without running it.

    Estimates come from the run store's history of each worker on its model (--db), typical
    token counts and prices where there is none."""
    request = read_request(request)
    orchestrator = guard(
        lambda: Orchestrator(
            registry(team),
            model=model,
            planner_model=planner_model,
            max_tasks=max_tasks,
            concurrency=concurrency,
            validator=validator,
            plan_budget_usd=plan_budget_usd,
            store=open_store(db, create=False),  # history only: no store is created
        )
    )

    async def plan_and_estimate(o: Orchestrator):
        the_plan, usage = await o.plan(request)
        return the_plan, usage, await o.estimate(the_plan, request)

    the_plan, usage, estimate = guard(lambda: drive(orchestrator, plan_and_estimate))
    if json_out:
        print(plan_json(the_plan, estimate))
    else:
        out.print(plan_tree(the_plan, estimate))
        out.print(estimate_table(estimate))
        tokens = f"planning took {usage.input_tokens} in / {usage.output_tokens} out tokens"
        out.print(Text(tokens, style="dim"))


@app.command()
def workers(
    team: TeamOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the workers as a JSON array.")
    ] = False,
) -> None:
    """List the workers in the registry (the built-in team, or --team), and the team
    file's patterns."""
    found = guard(lambda: registry(team))
    if json_out:
        print(json.dumps([worker_json(worker) for worker in found], indent=2))
    else:
        out.print(workers_table(found))
        if found.patterns:  # a team file's patterns: what `run --pattern` accepts
            kinds = ", ".join(f"{name} ({spec.kind})" for name, spec in found.patterns.items())
            out.print(Text(f"Patterns: {kinds}"))
        if tools := toolbox_line(found):  # what the workers' tools: lists pick from
            out.print(safe_text(tools), soft_wrap=True)


async def _record(store: Store, ref: str) -> RunRecord:
    """The run ``ref`` names: its id, a unique prefix of it, or ``last``."""
    return await store.get_run(await store.resolve_run(ref))


def main() -> None:
    show_warnings_as_lines()
    app()


# Registered after run, plan and workers, so that --help lists those first.
from foreman.cli import approvals, history, manage, stats, ui  # noqa: E402, F401
from foreman.cli import memory as _memory  # noqa: E402, F401
