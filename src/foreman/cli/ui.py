"""``foreman ui``: serve the dashboard (foreman.web) over the same run store as the CLI."""

from __future__ import annotations

from typing import Annotated

import typer

from foreman.cli.common import DbOpt, app, err, usage_error
from foreman.cli.text import safe_text
from foreman.store.sqlite import default_db_path
from foreman.web.security import token_problem

#: What ``foreman ui`` needs beyond the CLI's own dependencies (the ``ui`` extra).
UI_MODULES = {"fastapi", "uvicorn", "starlette"}
INSTALL_HINT = (
    "foreman ui needs the dashboard's extra dependencies (FastAPI, uvicorn): "
    "pip install 'foreman[ui]'"
)


@app.command()
def ui(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) "
            "requires a token."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8765,
    db: DbOpt = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="FOREMAN_UI_TOKEN",
            help="A secret every request must carry (open the page once with ?token=...; "
            "scripts send 'Authorization: Bearer TOKEN'). At least 16 characters.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a local dashboard: runs live, plans as graphs, a timeline of tasks and model
    calls, cost and latency by worker and model, and approvals to decide
    (docs/dashboard.md). Needs the ui extra: pip install 'foreman[ui]'."""
    token = token or None  # FOREMAN_UI_TOKEN= (set, empty) is no token
    if problem := token_problem(host, token):
        usage_error(problem, "--token")
    try:
        from foreman.web.app import serve
    except ModuleNotFoundError as exc:
        if exc.name not in UI_MODULES:
            raise
        err.print(INSTALL_HINT, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    path = db or default_db_path()
    if not path.exists():  # served anyway: the page fills once a run is stored there
        err.print(
            safe_text(
                f"note: no run store at {path} yet (a mistyped --db?); the page "
                "shows runs once one is stored there."
            ),
            soft_wrap=True,
        )
    try:
        serve(db, host=host, port=port, token=token, announce=lambda line: print(line, flush=True))
    except OSError as exc:
        err.print(safe_text(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}."))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
