"""Review of the SQLite store's writes on the event loop (``SQLiteStore._write``): cases the
commit's own tests (tests/test_store_loop_writes.py) leave out."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from foreman.store import sqlite as sqlite_module
from test_store_loop_writes import Threads, checkpoint, store_with_run


def test_aclose_from_another_thread_closes_the_loop_connection_and_folds_the_wal(tmp_path):
    """The store is used on an event loop in one thread and closed from another (a server
    thread's store closed at shutdown, by the main thread). ``aclose`` must still close the
    loop's connection: left open, the thread's connection is not the last one, so its close
    does not fold the WAL in, and the forgotten connection is closed whenever the garbage
    collector gets to it, on whatever thread it runs on (a loop's, possibly), where being
    the last connection it checkpoints the WAL: exactly what the loop must never do."""
    path = tmp_path / "runs.db"
    box: dict = {}

    async def use() -> None:
        store = await store_with_run(path)
        await store.save_checkpoints("r1", [checkpoint("t1")])
        box["store"], box["connection"] = store, store._here.connection

    worker = threading.Thread(target=lambda: asyncio.run(use()))
    worker.start()
    worker.join()
    store = box["store"]
    assert store._here is not None  # the small checkpoint was written on that thread's loop
    asyncio.run(store.aclose())
    assert store._here is None
    assert not Path(f"{path}-wal").exists()  # the WAL was folded in at close


def test_a_loop_that_closed_with_a_write_in_hand_does_not_turn_off_loop_writes(
    tmp_path, monkeypatch
):
    """A write handed to the thread, and its loop closes before hearing back (Ctrl-C, a run
    cancelled, ``asyncio.run`` ending): the writer must be idle again once the thread has
    written it. It stayed at 1 for good (the end was only counted by a callback on the loop,
    which no longer runs), so every later small checkpoint of the store went to the thread."""
    path = tmp_path / "runs.db"
    main = threading.get_ident()
    real = sqlite_module.put_calls

    def slow(db: sqlite3.Connection, rows: list) -> None:
        if threading.get_ident() != main:
            time.sleep(0.3)
        real(db, rows)

    monkeypatch.setattr(sqlite_module, "put_calls", slow)
    box: dict = {}

    async def first() -> None:
        store = box["store"] = await store_with_run(path)
        group = [checkpoint(f"t{i}") for i in range(sqlite_module.LOOP_WRITE_ROWS)]
        write = asyncio.create_task(store.save_checkpoints("r1", group))
        await asyncio.sleep(0.05)  # on the thread now
        write.cancel()  # as asyncio.run does to what is left when its coroutine ends

    asyncio.run(first())
    store = box["store"]
    deadline = time.monotonic() + 5
    while len(asyncio.run(store.load_tasks("r1"))) < sqlite_module.LOOP_WRITE_ROWS:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setattr(sqlite_module, "put_calls", real)
    threads = Threads(monkeypatch)

    async def second() -> None:
        await store.save_checkpoints("r1", [checkpoint("late")])
        await store.aclose()

    asyncio.run(second())
    assert threads.seen == [main]  # written on the loop again


async def test_the_loop_connection_opens_the_file_the_store_opened(tmp_path, monkeypatch):
    """A relative path, and the working directory changes after the store opened its file
    (a tool, a library, the application itself): the loop's connection, opened lazily on the
    first small checkpoint, opened ``path`` relative to the new directory, creating an empty
    database there, and the checkpoint failed ("no such table: runs")."""
    monkeypatch.chdir(tmp_path)
    store = await store_with_run(Path("runs.db"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    try:
        await store.save_checkpoints("r1", [checkpoint("t1")])
        assert set(await store.load_tasks("r1")) == {"t1"}
        assert os.listdir(elsewhere) == []  # no stray database created there
    finally:
        await store.aclose()


async def test_cancelled_writes_leave_the_writer_idle(tmp_path):
    """Sanity (held before and after the fix): a cancelled write is still written, and
    counted out once it has been."""
    store = await store_with_run(tmp_path / "runs.db")
    group = [checkpoint(f"t{i}") for i in range(sqlite_module.LOOP_WRITE_ROWS)]
    write = asyncio.create_task(store.save_checkpoints("r1", group))
    await asyncio.sleep(0)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    await store.list_runs()  # after the cancelled write, on the thread
    assert store._writer.idle
    assert len(await store.load_tasks("r1")) == sqlite_module.LOOP_WRITE_ROWS
    await store.aclose()


async def test_long_outputs_written_on_the_loop_do_not_let_the_wal_grow_unchecked(tmp_path):
    """Loop writes never checkpoint; the thread is asked to every ``CHECKPOINT_EVERY`` (100)
    commits, sized for checkpoints of 6-10 pages. A task with a 300 KB output writes ~150
    pages per commit (row and ``task_finished`` event), so the WAL grew to ~60 MB between
    two checkpoints, where the thread's connection (auto-checkpoint every 1000 pages) keeps
    it near 4 MB; and a power cut may lose all of it (``synchronous=NORMAL``)."""
    from foreman.events import TaskFinished
    from foreman.results import TaskResult, TaskStatus
    from foreman.store import Checkpoint

    sizes = {}
    for on_loop in (True, False):
        path = tmp_path / f"{on_loop}.db"
        store = await store_with_run(path, writes_on_loop=on_loop)
        largest = 0
        for i in range(60):
            done = TaskResult(
                task_id=f"t{i}", worker="w", status=TaskStatus.succeeded, output="x" * 300_000
            )
            await store.save_checkpoints("r1", [Checkpoint(done, [TaskFinished.of("r1", done)])])
            await store.list_runs()  # whatever was posted to the thread has run
            wal = Path(f"{path}-wal").stat().st_size  # noqa: ASYNC240
            largest = max(largest, wal)
        sizes[on_loop] = largest
        await store.aclose()
    assert sizes[True] <= 2 * sizes[False], sizes


async def test_busy_at_commit_on_the_loop_leaves_no_transaction_and_writes_once(tmp_path):
    """Sanity (held before the fix): the loop connection's COMMIT fails busy; the write is
    rolled back there, made on the thread, and later loop writes work."""
    store = await store_with_run(tmp_path / "runs.db")
    await store.save_checkpoints("r1", [checkpoint("t0")])
    real = store._here.connection

    class BusyCommit:
        failed = False

        def execute(self, sql: str, *args):
            if sql == "COMMIT" and not self.failed:
                self.failed = True
                raise sqlite3.OperationalError("database is locked")
            return real.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(real, name)

    store._here.connection = BusyCommit()
    try:
        await store.save_checkpoints("r1", [checkpoint("t1")])
        assert not real.in_transaction
        await store.save_checkpoints("r1", [checkpoint("t2")])
        assert sorted(await store.load_tasks("r1")) == ["t0", "t1", "t2"]
        assert len(await store.load_events("r1")) == 3
    finally:
        store._here.connection = real
        await store.aclose()
