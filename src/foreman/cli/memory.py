"""``foreman memory list|search|delete|clear``: what runs with ``--memory`` remembered.

Memory lives in the run store (``--db``), so it outlives the runs it came from; see
docs/memory.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from foreman.cli.common import DbOpt, app, err, guard, out, with_store
from foreman.cli.text import safe_text
from foreman.embeddings.base import embedder_of
from foreman.engine.memory import Memory
from foreman.errors import UnknownRunError
from foreman.store.memories import MemoryEntry, MemoryHit
from foreman.store.sqlite import SQLiteStore

memory_app = typer.Typer(
    help="Look into and prune memory: workers' outputs that runs with --memory keep.",
    no_args_is_help=True,
)
app.add_typer(memory_app, name="memory")

RunOpt = Annotated[
    str | None,
    typer.Option(
        "--run", help="Only the memories of this run: its id, a unique prefix of it, or 'last'."
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
#: Characters of a memory's text in a table row.
PREVIEW = 80


@memory_app.command("list")
def list_memories(
    run: RunOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Most memories to list.")] = 50,
    json_out: JsonOut = False,
    db: DbOpt = None,
) -> None:
    """List memories, newest first."""

    async def read(store: SQLiteStore) -> list[MemoryEntry]:
        return await store.list_memories(run_id=await _run_id(store, run), limit=limit)

    entries = guard(lambda: asyncio.run(with_store(db, read)))
    _show([(entry, None) for entry in entries], json_out)


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Most memories to show.")] = 5,
    run: RunOpt = None,
    embedder: Annotated[
        str, typer.Option(help="The embedder the memories were made with: 'local' or 'openai:M'.")
    ] = "local",
    json_out: JsonOut = False,
    db: DbOpt = None,
) -> None:
    """Find the memories most similar to QUERY, best first, with their similarity."""
    if not query.strip():  # an empty query would rank every memory by noise
        raise typer.BadParameter("give some words to look for.", param_hint="'QUERY'")

    async def find(store: SQLiteStore) -> tuple[list[MemoryHit], set[str]]:
        run_id = await _run_id(store, run)
        found = Memory(store, embedder_of(embedder))
        try:
            hits = await found.search(query, top_k=top_k, run_id=run_id, min_score=-1.0)
        finally:
            await found.embedder.aclose()
        others = (
            {e.embedder for e in await store.list_memories(run_id=run_id)} if not hits else set()
        )
        return hits, others

    hits, others = guard(lambda: asyncio.run(with_store(db, find)))
    if others and not json_out:  # vectors of one embedder are never compared with another's
        made_with = ", ".join(sorted(others))
        err.print(Text(f"No memories made with {embedder!r}; these were made with: {made_with}."))
    _show([(hit.entry, hit.score) for hit in hits], json_out)


@memory_app.command()
def delete(
    ids: Annotated[list[int], typer.Argument(help="Ids of the memories to forget.")],
    db: DbOpt = None,
) -> None:
    """Forget memories by id (`foreman memory list` shows the ids)."""

    async def forget(store: SQLiteStore) -> list[int]:
        return [memory_id for memory_id in ids if not await store.delete_memory(memory_id)]

    missing = guard(lambda: asyncio.run(with_store(db, forget)))
    for memory_id in missing:
        err.print(Text(f"No memory {memory_id}."))
    out.print(Text(f"Forgot {len(ids) - len(missing)} memories."))
    if missing:
        raise typer.Exit(1)


@memory_app.command()
def clear(run: RunOpt = None, db: DbOpt = None) -> None:
    """Forget every memory (or, with --run, one run's)."""

    async def forget(store: SQLiteStore) -> int:
        return await store.clear_memories(run_id=await _run_id(store, run))

    gone = guard(lambda: asyncio.run(with_store(db, forget)))
    out.print(Text(f"Forgot {gone} memories."))


async def _run_id(store: SQLiteStore, ref: str | None) -> str | None:
    """The run ``ref`` names, as everywhere else (id, unique prefix, ``last``); or, for a
    run deleted since (memories outlive their runs), its full id when memories carry it."""
    if ref is None:
        return None
    try:
        return await store.resolve_run(ref)
    except UnknownRunError:
        if await store.list_memories(run_id=ref, limit=1):
            return ref
        raise


def _show(rows: list[tuple[MemoryEntry, float | None]], json_out: bool) -> None:
    if json_out:
        print(json.dumps([_record(entry, score) for entry, score in rows], ensure_ascii=False))
        return
    if not rows:
        out.print(Text("No memories."))
        return
    table = Table(show_edge=False)
    scored = rows[0][1] is not None
    for column in ("id", "run", "task", "worker", *(["score"] if scored else []), "text"):
        table.add_column(column)
    for entry, score in rows:
        text = entry.text if len(entry.text) <= PREVIEW else entry.text[: PREVIEW - 1] + "…"
        cells = [str(entry.memory_id), entry.run_id, entry.task_id, entry.worker]
        table.add_row(
            *(safe_text(cell) for cell in cells),
            *([Text(f"{score:.2f}")] if score is not None else []),
            safe_text(text.replace("\n", " ")),
        )
    out.print(table)


def _record(entry: MemoryEntry, score: float | None) -> dict[str, Any]:
    record = entry.model_dump(exclude={"vector"})
    if score is not None:
        record["score"] = score
    return record
