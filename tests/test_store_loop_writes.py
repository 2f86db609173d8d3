"""Small checkpoints written on the event loop's thread (``SQLiteStore._write``): only
while the writer thread has nothing in hand, never waiting for a lock held elsewhere, never
checkpointing the WAL, and never overtaking a write handed to the thread before them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from foreman.events import TaskFinished
from foreman.ledger.records import CallRecord
from foreman.results import TaskResult, TaskStatus
from foreman.store import Checkpoint, SQLiteStore
from foreman.store import sqlite as sqlite_module
from foreman.store.records import RunRecord


def result(task_id: str) -> TaskResult:
    return TaskResult(task_id=task_id, worker="w", status=TaskStatus.succeeded, output=task_id)


def checkpoint(task_id: str) -> Checkpoint:
    done = result(task_id)
    return Checkpoint(done, [TaskFinished.of("r1", done)])


def call(call_id: str) -> CallRecord:
    return CallRecord(
        run_id="r1",
        call_id=call_id,
        parent="task:t1",
        purpose="task",
        provider="test",
        model="scripted",
    )


class Threads:
    """Which threads ran ``put_calls`` (the last step of every checkpoint write)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[int] = []
        real = sqlite_module.put_calls

        def put_calls(db: sqlite3.Connection, rows: list) -> None:
            self.seen.append(threading.get_ident())
            real(db, rows)

        monkeypatch.setattr(sqlite_module, "put_calls", put_calls)


async def store_with_run(path: Path, **options) -> SQLiteStore:
    store = SQLiteStore(path, **options)
    await store.create_run(RunRecord(run_id="r1", request="r"))
    return store


async def test_a_small_checkpoint_is_written_on_the_loop_thread(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    store = await store_with_run(tmp_path / "runs.db")
    await store.save_checkpoints("r1", [checkpoint("t1")], [call("c1")])
    assert threads.seen == [threading.get_ident()]
    assert (await store.load_tasks("r1"))["t1"].output == "t1"
    assert [c.call_id for c in await store.list_calls(run_id="r1")] == ["c1"]
    await store.aclose()
    assert not (tmp_path / "runs.db-wal").exists()  # folded in at close


async def test_off_big_groups_go_to_the_writer_thread(tmp_path, monkeypatch):
    threads = Threads(monkeypatch)
    here = threading.get_ident()
    store = await store_with_run(tmp_path / "a.db", writes_on_loop=False)
    await store.save_checkpoints("r1", [checkpoint("t1")])
    big = await store_with_run(tmp_path / "b.db")
    group = [checkpoint(f"t{i}") for i in range(sqlite_module.LOOP_WRITE_ROWS)]
    await big.save_checkpoints("r1", group)
    assert len(threads.seen) == 2 and here not in threads.seen
    assert len(await big.load_tasks("r1")) == sqlite_module.LOOP_WRITE_ROWS
    await store.aclose()
    await big.aclose()


async def test_a_lock_held_by_another_process_never_blocks_the_loop(tmp_path, monkeypatch):
    """Another connection holds the write lock: the checkpoint waits for it on the
    writer thread (busy timeout), while the loop goes on; then it is written."""
    threads = Threads(monkeypatch)
    path = tmp_path / "runs.db"
    store = await store_with_run(path)
    await store.save_checkpoints("r1", [checkpoint("t0")])  # the loop's connection is open
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    write = asyncio.create_task(store.save_checkpoints("r1", [checkpoint("t1")]))
    await asyncio.sleep(0.3)
    assert not write.done() and ticks >= 10  # waiting, and the loop is not
    other.execute("COMMIT")
    await asyncio.wait_for(write, 5)
    ticker.cancel()
    assert threads.seen[-1] != threading.get_ident()  # the thread wrote it
    assert set(await store.load_tasks("r1")) == {"t0", "t1"}
    other.close()
    await store.aclose()


async def test_a_write_never_overtakes_one_handed_to_the_thread(tmp_path, monkeypatch):
    """A write on the thread is slow; a small checkpoint made meanwhile goes after it,
    on the thread too, so the stored order is the order of the calls."""
    store = await store_with_run(tmp_path / "runs.db")
    order: list[str] = []
    real = sqlite_module.put_calls

    def put_calls(db: sqlite3.Connection, rows: list) -> None:
        if threading.get_ident() != loop_thread:
            time.sleep(0.2)
        order.append(rows[0][1])
        real(db, rows)

    loop_thread = threading.get_ident()
    monkeypatch.setattr(sqlite_module, "put_calls", put_calls)
    group = [checkpoint(f"t{i}") for i in range(sqlite_module.LOOP_WRITE_ROWS)]
    first = asyncio.create_task(store.save_checkpoints("r1", group, [call("big")]))
    await asyncio.sleep(0)  # handed over
    await store.save_checkpoints("r1", [checkpoint("t99")], [call("small")])
    await first
    assert order == ["big", "small"]
    await store.aclose()


async def test_wal_checkpoints_are_left_to_the_writer_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 3)
    threads: list[int] = []
    real = sqlite_module._passive_checkpoint

    def passive(db: sqlite3.Connection) -> None:
        threads.append(threading.get_ident())
        real(db)

    monkeypatch.setattr(sqlite_module, "_passive_checkpoint", passive)
    store = await store_with_run(tmp_path / "runs.db")
    for i in range(7):
        await store.save_checkpoints("r1", [checkpoint(f"t{i}")])
    await store.list_runs()  # the thread has run what was posted before this
    assert len(threads) == 2 and threading.get_ident() not in threads
    await store.aclose()
