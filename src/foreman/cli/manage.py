"""``foreman cancel``, ``foreman rm`` and ``foreman doctor``: looking after the run store.

A run is named by its full id, a unique prefix of it, or ``last`` (the newest run), as
in every command that takes a run.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.text import Text

from foreman.cli.common import DbOpt, RunRefArg, app, err, guard, out, run_ref, with_store
from foreman.cli.nesting import lineage
from foreman.cli.text import literal
from foreman.errors import ForemanError
from foreman.results import RunStatus
from foreman.store.sqlite import SQLiteStore, default_db_path


@app.command()
def cancel(run: RunRefArg, db: DbOpt = None) -> None:
    """Cancel a run: a running one stops within seconds, a paused one is dropped.

    A cancelled run is final: `foreman resume` refuses it, and its pending approval
    requests are withdrawn. Finished runs cannot be cancelled (`foreman rm` deletes them)."""
    run_id = run_ref(db, run)
    status = guard(lambda: asyncio.run(with_store(db, lambda store: store.cancel_run(run_id))))
    if status is RunStatus.running:
        out.print(
            Text(
                f"Asked run {run_id} to stop: the process running it stops within a few "
                "seconds and marks it cancelled."
            ),
            soft_wrap=True,
        )
    else:
        out.print(Text(f"Run {run_id} cancelled."), soft_wrap=True)


@app.command("rm")
def remove(
    runs: Annotated[list[str], typer.Argument(help="Runs to delete: ids, prefixes or 'last'.")],
    db: DbOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even a run that is running right now.")
    ] = False,
) -> None:
    """Delete runs with everything stored about them (plan, tasks, events, approvals).

    A run's nested runs go with it. A nested run alone cannot be deleted: what it spent is
    part of its parent's books."""
    run_ids = list(dict.fromkeys(run_ref(db, ref) for ref in runs))  # all named before any goes

    async def delete(store: SQLiteStore) -> None:
        doomed = []
        for run_id in run_ids:
            path = await lineage(store, run_id)
            if any(above in run_ids for above in path[:-1]):
                continue  # deleted with the run it is nested in
            if len(path) > 1:
                raise ForemanError(
                    f"Run {run_id} is nested in run {path[-2]}, whose books include what it "
                    f"spent; `foreman rm {path[0]}` deletes it with its top-level run."
                )
            doomed.append(run_id)
        for run_id in doomed:
            await store.delete_run(run_id, force=force)
            out.print(Text(f"Deleted run {run_id}."), soft_wrap=True)

    guard(lambda: asyncio.run(with_store(db, delete)))


@app.command()
def doctor(db: DbOpt = None) -> None:
    """Check the run store: the file's integrity and that every stored run can be read.

    Exits 0 when healthy, 1 with one line per problem otherwise."""
    problems = guard(lambda: asyncio.run(with_store(db, lambda store: store.check())))
    for problem in problems:
        err.print(Text.assemble(("problem:", "red"), literal(f" {problem}")), soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    path = db.expanduser() if db else default_db_path()
    out.print(Text(literal(f"{path}: healthy")), soft_wrap=True)
