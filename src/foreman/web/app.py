"""The dashboard's web application: the page, its JSON API and its event stream.

``create_app(store)`` serves any ``Store``; ``serve`` is what ``foreman ui`` runs: the
SQLite run store the CLI uses, behind uvicorn. Every route answers JSON built by
``foreman.web.views``; every foreman error becomes one line, ``{"error": ...}``, with a
status that says what kind (404 unknown run, 409 nothing to decide...).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from foreman.errors import (
    AmbiguousRunError,
    ApprovalError,
    ForemanError,
    StoreNotFoundError,
    UnknownRunError,
)
from foreman.ledger.stats import GroupBy
from foreman.store.base import Store
from foreman.store.sqlite import SQLiteStore
from foreman.web import views
from foreman.web.live import POLL_SECONDS, ChangeFeed
from foreman.web.security import Guard, is_loopback

STATIC = files("foreman.web") / "static"
#: The files of the page, by the path the browser asks for.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
ERROR_STATUS = [
    (AmbiguousRunError, 400),
    (UnknownRunError, 404),
    (StoreNotFoundError, 404),
    (ApprovalError, 409),
]


class Decision(BaseModel):
    """An approval or rejection from the page (or a script)."""

    inputs_sha256: str = Field(
        description="The sha256 of the input shown (``inputs_sha256`` of /api/approvals): "
        "a decision covers only the input that was shown."
    )
    note: str | None = Field(None, description="Why: the approver's note or the reason.")


def create_app(
    store: Store,
    *,
    token: str | None = None,
    loopback_only: bool = True,
    poll_interval: float = POLL_SECONDS,
    close_store: bool = False,
) -> Guard:
    """The dashboard over ``store``, behind its guard; ``close_store``: close the store
    when the server stops (else the caller does)."""
    feed = ChangeFeed(store, poll_interval)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await feed.aclose()
        if close_store:
            await store.aclose()

    app = FastAPI(title="foreman dashboard", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.exception_handler(ForemanError)
    async def foreman_error(_: Request, exc: ForemanError) -> JSONResponse:
        status = next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 500)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg')}."}, status_code=422)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400)

    for path, (name, media) in PAGE_FILES.items():
        app.add_api_route(path, _page_file(name, media), methods=["GET"], include_in_schema=False)

    @app.get("/api/runs")
    async def runs(
        status: str | None = None,
        q: Annotated[str | None, Query(description="Text in the request or id.")] = None,
        nested: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict:
        found = await views.runs_view(store, status=status, search=q, nested=nested, limit=limit)
        return {"runs": found}

    @app.get("/api/runs/{run_id}")
    async def run(run_id: str) -> dict:
        return await views.run_view(store, run_id)

    @app.get("/api/runs/{run_id}/calls")
    async def calls(run_id: str, descendants: bool = False, prompts: bool = False) -> dict:
        return await views.calls_view(store, run_id, descendants=descendants, prompts=prompts)

    @app.get("/api/runs/{run_id}/tasks/{task_id}")
    async def task(run_id: str, task_id: str) -> dict:
        return await views.task_view(store, run_id, task_id)

    @app.get("/api/stats")
    async def stats(
        by: GroupBy = GroupBy.worker,
        since: float | None = None,
        until: float | None = None,
        run: str | None = None,
    ) -> dict:
        return await views.stats_view(store, by, since=since, until=until, ref=run)

    @app.get("/api/approvals")
    async def approvals(all: bool = False) -> dict:
        return {"approvals": await views.approvals_view(store, every=all)}

    @app.post("/api/runs/{run_id}/tasks/{task_id}/approve")
    async def approve(run_id: str, task_id: str, decision: Annotated[Decision, Body()]) -> dict:
        return await views.decide_view(
            store,
            run_id,
            task_id,
            approved=True,
            note=decision.note or None,
            inputs_sha256=decision.inputs_sha256,
        )

    @app.post("/api/runs/{run_id}/tasks/{task_id}/reject")
    async def reject(run_id: str, task_id: str, decision: Annotated[Decision, Body()]) -> dict:
        if not (decision.note or "").strip():
            raise ApprovalError("A rejection needs a reason (it is recorded and shown).")
        return await views.decide_view(
            store,
            run_id,
            task_id,
            approved=False,
            note=decision.note,
            inputs_sha256=decision.inputs_sha256,
        )

    @app.get("/api/events")
    async def events() -> StreamingResponse:
        return StreamingResponse(
            feed.stream(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    return Guard(app, token=token, loopback_only=loopback_only)


def _page_file(name: str, media: str):
    async def page() -> Response:
        return Response((STATIC / name).read_bytes(), media_type=media)

    return page


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening before the server starts: ``--port 0`` can print the port it
    got, and a browser opening the printed address waits in the backlog, never refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    return sock


def serve(
    db: Path | None,
    *,
    host: str,
    port: int,
    token: str | None,
    announce=print,
) -> None:
    """Serve the dashboard over the run store at ``db`` until Ctrl-C. The store is opened
    read-mostly: a missing file is not created (the page shows no runs until one starts)."""
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    store = SQLiteStore(db, create=False)
    announce(f"foreman ui: {url}{'?token=' + token if token else ''} (Ctrl-C stops it)")
    app = create_app(store, token=token, loopback_only=is_loopback(host), close_store=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
