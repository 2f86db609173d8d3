"""The public store conformance suite (``foreman.testing.store_conformance``) run against
``MemoryStore`` and ``SQLiteStore``, and the tests that are SQLite's (or memory's) own: files,
processes, a corrupted or newer database, a full disk, a lock held by someone else, and
storage that grows linearly with the number of tasks.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

import processes
from foreman.errors import (
    CorruptedRunError,
    RunLockedError,
    StoreError,
    StoreNotFoundError,
    UnknownRunError,
)
from foreman.events import TaskFinished, TaskStarted
from foreman.models.base import Usage
from foreman.results import RunStatus
from foreman.store import ApprovalStatus, LeaseOwner, MemoryStore, SQLiteStore, Store
from foreman.store.migrations import MIGRATIONS
from foreman.testing.store_conformance import StoreConformance
from foreman.testing.store_conformance.records import (
    approval,
    as_stored,
    call,
    plan,
    result,
    run_record,
)


class TestMemoryStore(StoreConformance):
    def make_store(self, tmp_path: Path) -> Store:
        return MemoryStore()


class TestSQLiteStore(StoreConformance):
    def make_store(self, tmp_path: Path) -> Store:
        return SQLiteStore(tmp_path / "r.db")

    def reopen_store(self, tmp_path: Path) -> Store:
        return SQLiteStore(tmp_path / "r.db")


# --- the suite itself ----------------------------------------------------------------------


def test_the_suite_says_what_a_subclass_must_define(tmp_path: Path) -> None:
    class TestIncomplete(StoreConformance):
        pass

    with pytest.raises(NotImplementedError, match=r"must define make_store\(self, tmp_path\)"):
        TestIncomplete().test_run_round_trips(tmp_path)


def test_foreman_testing_needs_no_pytest() -> None:
    code = "import sys, foreman.testing; assert 'pytest' not in sys.modules, 'imported pytest'"
    done = processes.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr


# --- memory only -------------------------------------------------------------------------


async def test_memory_a_closed_store_keeps_its_runs_readable() -> None:
    store = MemoryStore()
    await store.create_run(run_record())
    await store.save_task("run-1", result("t1"))
    await store.aclose()
    await store.aclose()
    assert set(await store.load_tasks("run-1")) == {"t1"}


# --- SQLite only -------------------------------------------------------------------------


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_sqlite_takes_over_a_lease_whose_process_is_gone(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    dead = LeaseOwner(pid=process.pid, host=socket.gethostname())
    assert not dead.is_alive()

    store = SQLiteStore(tmp_path / "runs.db")
    try:
        await store.create_run(run_record())
        await store.acquire_lease("run-1", dead, ttl=3600)
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)  # no wait for the ttl
        # A live holder on another host cannot be checked, so its lease is respected.
        remote = LeaseOwner(pid=process.pid, host="another-host.invalid")
        await store.create_run(run_record("run-2"))
        await store.acquire_lease("run-2", remote, ttl=3600)
        with pytest.raises(RunLockedError, match=r"another-host\.invalid"):
            await store.acquire_lease("run-2", LeaseOwner(), ttl=60)
    finally:
        await store.aclose()


async def test_sqlite_data_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    try:
        events = [TaskStarted(run_id="run-1", task_id="t1", worker="researcher")]
        await first.create_run(run_record(settings={"model": "local"}))
        await first.save_plan("run-1", plan("t1", "t2"))
        await first.save_task("run-1", result("t1", output={"a": 1}), events)
        await first.request_approval(approval("t2"))
        owner = LeaseOwner()
        await first.acquire_lease("run-1", owner, ttl=60)

        # Another connection (as another process would have) sees every commit at once.
        run = await second.get_run("run-1")
        assert (run.plan, run.plan_version, run.settings) == (
            plan("t1", "t2"),
            1,
            {"model": "local"},
        )
        assert await second.load_tasks("run-1") == {"t1": result("t1", output={"a": 1})}
        assert await second.load_events("run-1") == as_stored(events)
        assert [a.task_id for a in await second.list_approvals()] == ["t2"]
        with pytest.raises(RunLockedError):
            await second.acquire_lease("run-1", LeaseOwner(), ttl=60)

        await second.decide("run-1", "t2", approved=True, note=None)
        await first.aclose()
        reopened = SQLiteStore(path)
        try:
            approved = await reopened.get_approval("run-1", "t2")
            assert approved is not None and approved.status is ApprovalStatus.approved
            assert (await reopened.list_runs())[0].tasks_done == 1
        finally:
            await reopened.aclose()
    finally:
        await first.aclose()
        await second.aclose()


async def test_sqlite_creates_missing_folders(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a" / "b" / "runs.db")
    try:
        await store.create_run(run_record())
        assert (tmp_path / "a" / "b" / "runs.db").exists()
    finally:
        await store.aclose()


async def test_sqlite_a_file_that_is_not_a_database_is_reported_as_corrupted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"\x00garbage, certainly not SQLite\xff" * 512)
    store = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="corrupted") as raised:
            await store.get_run("run-1")
        assert not isinstance(raised.value, UnknownRunError)
        assert str(path) in str(raised.value)
        with pytest.raises(StoreError, match="corrupted"):
            await store.create_run(run_record())
    finally:
        await store.aclose()


async def test_sqlite_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.create_run(run_record())
    await store.aclose()
    with raw(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()

    newer = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="newer"):
            await newer.get_run("run-1")
    finally:
        await newer.aclose()


@pytest.mark.parametrize("writes_on_loop", [True, False], ids=["loop", "thread"])
async def test_sqlite_a_full_disk_fails_the_write_and_keeps_earlier_checkpoints(
    tmp_path: Path, writes_on_loop: bool
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, writes_on_loop=writes_on_loop)
    try:
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1", "t2", "t3", "big"))
        kept = [result(f"t{i}", output=f"checkpoint {i}") for i in (1, 2, 3)]
        for task_result in kept:
            await store.save_task(
                "run-1",
                task_result,
                [TaskStarted(run_id="run-1", task_id=task_result.task_id, worker="w")],
            )

        # ``max_page_count`` is per connection, so it is set on the store's own connections
        # (the writer thread's, and the loop's for small writes): from here on the
        # database cannot grow more than a few pages, as on a full disk.
        def cap(db: sqlite3.Connection) -> None:
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count = {pages + 2}")

        await store._run(cap)
        assert (store._here is not None) is writes_on_loop
        if store._here is not None:
            cap(store._here.connection)
        big = result("big", output="x" * 200_000)
        with pytest.raises(StoreError, match="full") as raised:
            await store.save_task(
                "run-1",
                big,
                [TaskStarted(run_id="run-1", task_id="big", worker="w")],
                [call("big-1", task_id="big")],
            )
        assert "resume" in str(raised.value)
        assert await store.list_calls(run_id="run-1") == []  # all of the checkpoint, or none

        expected = {r.task_id: r for r in kept}
        assert await store.load_tasks("run-1") == expected
        assert len(await store.load_events("run-1")) == 3
        # The store is not stuck in a half-done transaction: small writes still go through.
        await store.save_task("run-1", result("t1", output="again"))
        expected["t1"] = result("t1", output="again")
    finally:
        await store.aclose()

    reopened = SQLiteStore(path)
    try:
        assert await reopened.load_tasks("run-1") == expected
        assert (await reopened.get_run("run-1")).plan_version == 1
    finally:
        await reopened.aclose()


async def test_sqlite_a_database_locked_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.1)
    try:
        await store.create_run(run_record())
        holder = raw(path)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            started = time.perf_counter()
            with pytest.raises(StoreError, match="locked"):
                await store.save_task("run-1", result("t1"))
            assert time.perf_counter() - started < 2
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await store.save_task("run-1", result("t1"))  # fine once the lock is gone
        assert set(await store.load_tasks("run-1")) == {"t1"}
    finally:
        await store.aclose()


async def test_sqlite_storage_grows_linearly_with_tasks(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)

    def size() -> int:
        with raw(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            wal = path.with_name(path.name + "-wal")
            total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        connection.close()
        return total

    async def write(start: int, count: int) -> None:
        for i in range(start, start + count):
            output = f"Finding {i}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(60))
            task_result = result(
                f"t{i}", output=output, usage=Usage(input_tokens=400, output_tokens=120)
            )
            events = [
                TaskStarted(run_id="run-1", task_id=f"t{i}", worker="researcher"),
                TaskFinished(
                    run_id="run-1",
                    task_id=f"t{i}",
                    worker="researcher",
                    output=output,
                    usage=task_result.usage,
                    latency=0.1,
                    attempts=1,
                ),
            ]
            await store.save_task("run-1", task_result, events)

    try:
        await store.create_run(run_record())
        await store.save_plan("run-1", plan(*(f"t{i}" for i in range(400))))
        empty = size()
        await write(0, 200)
        after_200 = size()
        await write(200, 200)
        after_400 = size()
    finally:
        await store.aclose()

    first = (after_200 - empty) / 200
    second = (after_400 - after_200) / 200
    print(
        f"\nSQLite storage: {first:.0f} bytes/task for tasks 1-200, {second:.0f} for 201-400 "
        f"({after_400 / 400:.0f} bytes/task overall, {after_400} bytes for 400 tasks)"
    )
    assert second / first < 1.3
    assert after_400 / 400 < 2 * (after_200 / 200)


async def test_sqlite_writes_happen_off_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    threads: set[str] = set()
    try:
        await store.create_run(run_record())
        await store._run(
            lambda db: db.set_trace_callback(lambda _: threads.add(threading.current_thread().name))
        )
        await store.save_plan("run-1", plan("t1"))
        await store.save_task("run-1", result("t1"))
        await store.update_run("run-1", status=RunStatus.succeeded, answer="a")
        await store.load_tasks("run-1")

        assert threads and all(name.startswith("foreman-store") for name in threads)
        assert threading.current_thread().name not in threads
        assert any(t.name.startswith("foreman-store") for t in threading.enumerate())
    finally:
        await store.aclose()


# --- rows that do not parse, and the check that finds them --------------------------------


async def stored_run(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        await store.create_run(run_record(settings={"model": "local"}))
        await store.save_plan("run-1", plan("t1", "t2"))
        await store.save_task(
            "run-1", result("t1"), [TaskStarted(run_id="run-1", task_id="t1", worker="w")]
        )
        await store.request_approval(approval("t2"))
        await store.update_run("run-1", status=RunStatus.waiting_approval)
    finally:
        await store.aclose()


CORRUPTIONS = {
    "task row": ("UPDATE tasks SET result = '{not json'", ["load_tasks"]),
    "status": ("UPDATE runs SET status = 'exploded'", ["get_run", "list_runs"]),
    "settings": ("UPDATE runs SET settings = 'not json at all'", ["get_run", "list_runs"]),
    "settings type": ("UPDATE runs SET settings = '[1, 2]'", ["get_run", "list_runs"]),
    "plan": ("UPDATE plans SET plan = '{\"tasks\": 3}'", ["get_run"]),
    "event": ("UPDATE events SET event = 'nope'", ["load_events"]),
    "approval": ("UPDATE approvals SET approval = '{}'", ["list_approvals", "get_approval"]),
    "lease": ("UPDATE runs SET lease_owner = 'garbage'", ["get_run", "list_runs"]),
    "tokens": ("UPDATE runs SET input_tokens = 'abc'", ["get_run", "list_runs"]),
    "time": ("UPDATE runs SET created_at = 'yesterday'", ["get_run", "list_runs"]),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
async def test_sqlite_a_corrupted_row_is_one_clear_error_naming_the_run(
    tmp_path: Path, what: str
) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    sql, readers = CORRUPTIONS[what]
    with raw(path) as connection:
        connection.execute(sql)
    connection.close()

    store = SQLiteStore(path)
    try:
        calls = {
            "load_tasks": lambda: store.load_tasks("run-1"),
            "get_run": lambda: store.get_run("run-1"),
            "list_runs": lambda: store.list_runs(),
            "load_events": lambda: store.load_events("run-1"),
            "list_approvals": lambda: store.list_approvals(),
            "get_approval": lambda: store.get_approval("run-1", "t2"),
        }
        for reader in readers:
            with pytest.raises(CorruptedRunError) as raised:
                await calls[reader]()
            message = str(raised.value)
            assert raised.value.run_id == "run-1"
            assert "Run run-1" in message and "corrupted" in message and str(path) in message
            assert "\n" not in message and "https://" not in message and len(message) < 400
        problems = await store.check()
        assert len(problems) == 1 and problems[0].startswith("run run-1:"), problems

        await store.delete_run("run-1")  # the way out the message suggests
        assert await store.check() == []
    finally:
        await store.aclose()


async def test_sqlite_check_finds_nothing_in_a_healthy_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    store = SQLiteStore(path)
    try:
        assert await store.check() == []
    finally:
        await store.aclose()


# --- opening: read-only, concurrently, and an older schema ---------------------------------


async def test_sqlite_without_create_never_makes_a_file(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "runs.db"
    store = SQLiteStore(path, create=False)
    try:
        assert await store.list_runs() == [] and await store.list_approvals() == []
        for read in (store.get_run("run-1"), store.resolve_run("last"), store.check()):
            with pytest.raises(StoreNotFoundError, match="No run store at") as raised:
                await read
            assert str(path) in str(raised.value)
    finally:
        await store.aclose()
    assert not path.exists() and not path.parent.exists()

    await stored_run(path)  # once it exists, it opens as usual
    store = SQLiteStore(path, create=False)
    try:
        assert (await store.get_run("run-1")).settings == {"model": "local"}
    finally:
        await store.aclose()


async def test_sqlite_without_create_leaves_an_empty_file_as_it_was(tmp_path: Path) -> None:
    """`foreman runs --db notes.txt` on an empty file made it a foreman database."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"")
    store = SQLiteStore(path, create=False)
    try:
        assert await store.list_runs() == [] and await store.list_calls() == []
        with pytest.raises(StoreNotFoundError, match="No run store at"):
            await store.get_run("run-1")
    finally:
        await store.aclose()
    assert path.read_bytes() == b""


async def test_sqlite_two_stores_in_one_process_create_the_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    stores = [SQLiteStore(path) for _ in range(6)]
    try:
        await asyncio.gather(*(s.create_run(run_record(f"r{n}")) for n, s in enumerate(stores)))
        assert len(await stores[0].list_runs()) == 6
    finally:
        for s in stores:
            await s.aclose()


async def test_sqlite_a_database_of_the_previous_schema_is_migrated_with_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with raw(path) as connection:  # the database as foreman with schema 1 left it
        connection.executescript(MIGRATIONS[0])
        connection.execute("PRAGMA user_version = 1")
        connection.execute(
            "INSERT INTO runs (run_id, request, status, settings, input_tokens, output_tokens,"
            " created_at, updated_at) VALUES ('old', 'an old request', 'partial',"
            ' \'{"model": "local"}\', 100, 50, 1.0, 2.0)'
        )
        connection.execute(
            "INSERT INTO plans (run_id, version, plan, input_tokens, output_tokens, created_at)"
            " VALUES ('old', 1, ?, 7, 3, 1.0)",
            (plan("t1").model_dump_json(),),
        )
        connection.execute(
            "INSERT INTO tasks (run_id, task_id, status, model, input_tokens, output_tokens,"
            " result, updated_at) VALUES ('old', 't1', 'succeeded', 'local', 5, 6, ?, 1.0)",
            (result("t1", usage=Usage(input_tokens=5, output_tokens=6)).model_dump_json(),),
        )
    connection.close()

    store = SQLiteStore(path)
    try:
        run = await store.get_run("old")
        assert (run.request, run.status, run.settings) == (
            "an old request",
            RunStatus.partial,
            {"model": "local"},
        )
        assert run.usage == Usage(input_tokens=100, output_tokens=50)
        assert run.plan == plan("t1") and run.plan_usage == Usage(input_tokens=7, output_tokens=3)
        assert (await store.load_tasks("old"))["t1"].usage.output_tokens == 6
        [summary] = await store.list_runs()
        assert (summary.tasks, summary.tasks_done) == (1, 1)

        cached = Usage(input_tokens=1, cache_read_tokens=9, cache_write_tokens=4)
        await store.update_run("old", status=RunStatus.partial, usage=cached)
        assert (await store.get_run("old")).usage == cached
    finally:
        await store.aclose()
    with raw(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    connection.close()


async def test_sqlite_check_reports_a_damaged_page(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    with raw(path) as connection:
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        (root,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'approvals_by_status'"
        ).fetchone()
    connection.close()
    with path.open("r+b") as file:  # scribble over the header of one index page
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * 64)

    store = SQLiteStore(path)
    try:
        problems = await store.check()
        assert problems and all(problem.startswith(str(path)) for problem in problems)
    finally:
        await store.aclose()


async def test_sqlite_a_locked_run_names_the_process_holding_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        await store.create_run(run_record())
        holder = LeaseOwner()
        await store.acquire_lease("run-1", holder, ttl=60)
        with pytest.raises(RunLockedError) as raised:
            await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
        assert str(holder.pid) in str(raised.value) and holder.host in str(raised.value)
    finally:
        await store.aclose()


async def test_sqlite_closing_lets_go_of_the_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    await store.create_run(run_record())
    await store.aclose()
    await store.aclose()
    assert store._connection is None
