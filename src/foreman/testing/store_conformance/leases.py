"""Leases, the ``crashed`` status they imply, and naming, cancelling and deleting runs."""

from __future__ import annotations

import asyncio
import sys

import pytest

from foreman.errors import (
    AmbiguousRunError,
    ApprovalError,
    RunFinishedError,
    RunLockedError,
    UnknownRunError,
)
from foreman.events import TaskStarted
from foreman.results import RunStatus
from foreman.store.base import ApprovalStatus, LeaseOwner, Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import approval, plan, result, run_record


async def status_everywhere(store: Store, run_id: str) -> set[RunStatus]:
    """The run's status as ``get_run`` and as ``list_runs`` report it."""
    listed = {run.run_id: run.status for run in await store.list_runs()}
    return {(await store.get_run(run_id)).status, listed[run_id]}


class LeaseTests(Harness):
    """One live process executes a run at a time; a run whose process is gone is
    ``crashed``; runs are named by prefix, cancelled and deleted."""

    @store_test
    async def test_a_live_lease_keeps_other_owners_out(self, store: Store) -> None:
        await store.create_run(run_record())
        a, b = LeaseOwner(), LeaseOwner()

        await store.acquire_lease("run-1", a, ttl=60)
        await store.acquire_lease("run-1", a, ttl=60)  # the same owner may take it again
        with pytest.raises(RunLockedError):
            await store.acquire_lease("run-1", b, ttl=60)

        await store.release_lease("run-1", b)  # not b's to release: nothing happens
        with pytest.raises(RunLockedError):
            await store.acquire_lease("run-1", b, ttl=60)

        await store.release_lease("run-1", a)
        await store.acquire_lease("run-1", b, ttl=60)
        with pytest.raises(RunLockedError):
            await store.acquire_lease("run-1", a, ttl=60)

    @store_test
    async def test_an_expired_lease_can_be_taken(self, store: Store) -> None:
        await store.create_run(run_record())
        a, b = LeaseOwner(), LeaseOwner()
        await store.acquire_lease("run-1", a, ttl=0.01)
        await asyncio.sleep(0.05)
        await store.acquire_lease("run-1", b, ttl=60)
        with pytest.raises(RunLockedError):
            await store.acquire_lease("run-1", a, ttl=60)

    @store_test
    async def test_renewing_extends_the_lease(self, store: Store) -> None:
        await store.create_run(run_record())
        a, b = LeaseOwner(), LeaseOwner()
        await store.acquire_lease("run-1", a, ttl=0.01)
        await store.renew_lease("run-1", a, ttl=60)
        await store.renew_lease("run-1", b, ttl=60)  # b holds nothing: no effect
        await asyncio.sleep(0.05)
        with pytest.raises(RunLockedError):
            await store.acquire_lease("run-1", b, ttl=60)

    @store_test
    async def test_leases_are_per_run(self, store: Store) -> None:
        await store.create_run(run_record("a"))
        await store.create_run(run_record("b"))
        one, other = LeaseOwner(), LeaseOwner()
        await store.acquire_lease("a", one, ttl=60)
        await store.acquire_lease("b", other, ttl=60)  # a's holder does not lock b

        third = LeaseOwner()
        for run_id in ("a", "b"):
            with pytest.raises(RunLockedError):
                await store.acquire_lease(run_id, third, ttl=60)
        await store.release_lease("a", one)
        await store.acquire_lease("a", third, ttl=60)  # a is free now...
        with pytest.raises(RunLockedError):
            await store.acquire_lease("b", third, ttl=60)  # ...and b still is not

    @store_test
    async def test_a_running_run_whose_lease_expired_reads_crashed(self, store: Store) -> None:
        await store.create_run(run_record())
        assert await status_everywhere(store, "run-1") == {RunStatus.running}  # never leased yet
        owner = LeaseOwner()
        await store.acquire_lease("run-1", owner, ttl=60)
        assert await status_everywhere(store, "run-1") == {RunStatus.running}

        await store.acquire_lease("run-1", owner, ttl=0.01)
        await asyncio.sleep(0.05)
        assert await status_everywhere(store, "run-1") == {RunStatus.crashed}

        await store.renew_lease("run-1", owner, ttl=60)  # it was only slow: running again
        assert await status_everywhere(store, "run-1") == {RunStatus.running}

    @store_test
    async def test_a_lease_released_with_the_run_still_running_reads_crashed(
        self, store: Store
    ) -> None:
        await store.create_run(run_record())
        owner = LeaseOwner()
        await store.acquire_lease("run-1", owner, ttl=60)
        await store.release_lease("run-1", owner)
        assert await status_everywhere(store, "run-1") == {RunStatus.crashed}

    @store_test
    async def test_a_settled_run_keeps_its_status_after_its_lease(self, store: Store) -> None:
        await store.create_run(run_record())
        owner = LeaseOwner()
        await store.acquire_lease("run-1", owner, ttl=60)
        await store.update_run("run-1", status=RunStatus.interrupted)
        await store.release_lease("run-1", owner)
        assert await status_everywhere(store, "run-1") == {RunStatus.interrupted}

    @store_test
    async def test_a_running_run_whose_process_is_gone_reads_crashed(self, store: Store) -> None:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await process.wait()
        await store.create_run(run_record())
        await store.acquire_lease("run-1", LeaseOwner(pid=process.pid), ttl=3600)
        assert await status_everywhere(store, "run-1") == {RunStatus.crashed}

    @store_test
    async def test_resolve_run_by_id_prefix_or_last(self, store: Store) -> None:
        for n, run_id in enumerate(["20260101-aaa111", "20260101-aab222", "20260102-ccc333"]):
            await store.create_run(run_record(run_id, created_at=100.0 + n))

        assert await store.resolve_run("20260101-aaa111") == "20260101-aaa111"
        assert await store.resolve_run("20260101-aaa") == "20260101-aaa111"
        assert await store.resolve_run("20260102") == "20260102-ccc333"
        assert await store.resolve_run("last") == "20260102-ccc333"
        with pytest.raises(AmbiguousRunError) as ambiguous:
            await store.resolve_run("20260101-aa")
        assert "20260101-aaa111" in str(ambiguous.value)
        assert "20260101-aab222" in str(ambiguous.value)
        for ref in ("nope", "", "%", "2026_"):
            with pytest.raises(UnknownRunError) as unknown:
                await store.resolve_run(ref)
            assert not isinstance(unknown.value, AmbiguousRunError)

    @store_test
    async def test_resolve_last_in_an_empty_store_is_unknown(self, store: Store) -> None:
        with pytest.raises(UnknownRunError):
            await store.resolve_run("last")

    @store_test
    async def test_a_run_named_like_a_prefix_of_another_is_taken_whole(self, store: Store) -> None:
        await store.create_run(run_record("abc", created_at=1.0))
        await store.create_run(run_record("abcdef", created_at=2.0))
        assert await store.resolve_run("abc") == "abc"

    @store_test
    async def test_cancelling_a_paused_run_ends_it_at_once(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.update_run("run-1", status=RunStatus.waiting_approval)
        assert await store.cancel_run("run-1") is RunStatus.cancelled
        assert (await store.get_run("run-1")).status is RunStatus.cancelled
        with pytest.raises(RunFinishedError, match="already cancelled"):
            await store.cancel_run("run-1")

    @store_test
    async def test_cancelling_a_finished_run_is_refused(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.update_run("run-1", status=RunStatus.succeeded, answer="done")
        with pytest.raises(RunFinishedError, match="already succeeded"):
            await store.cancel_run("run-1")
        assert (await store.get_run("run-1")).status is RunStatus.succeeded
        with pytest.raises(UnknownRunError):
            await store.cancel_run("nope")

    @store_test
    async def test_cancelling_a_running_run_asks_its_process_to_stop(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.create_run(run_record("other"))
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
        assert not await store.cancel_requested("run-1")

        assert await store.cancel_run("run-1") is RunStatus.running
        assert await store.cancel_requested("run-1")
        assert not await store.cancel_requested("other")
        # The executing process settles the status itself when it stops.
        assert (await store.get_run("run-1")).status is RunStatus.running

    @store_test
    async def test_cancelling_a_crashed_run_ends_it(self, store: Store) -> None:
        await store.create_run(run_record())
        owner = LeaseOwner()
        await store.acquire_lease("run-1", owner, ttl=60)
        await store.release_lease("run-1", owner)  # left running: crashed
        assert await store.cancel_run("run-1") is RunStatus.cancelled
        assert (await store.get_run("run-1")).status is RunStatus.cancelled

    @store_test
    async def test_a_run_cancelled_while_paused_withdraws_its_pending_approvals(
        self, store: Store
    ) -> None:
        await _cancelled_run_withdraws_its_pending_approvals(store, directly=True)

    @store_test
    async def test_a_run_its_process_cancelled_withdraws_its_pending_approvals(
        self, store: Store
    ) -> None:
        await _cancelled_run_withdraws_its_pending_approvals(store, directly=False)

    @store_test
    async def test_deleting_a_run_removes_everything_about_it(self, store: Store) -> None:
        for run_id in ("run-1", "keep"):
            await store.create_run(run_record(run_id))
            await store.save_plan(run_id, plan("t1", "t2"))
            await store.save_task(
                run_id, result("t1"), [TaskStarted(run_id=run_id, task_id="t1", worker="w")]
            )
            await store.request_approval(approval("t2", run_id=run_id))
            await store.update_run(run_id, status=RunStatus.waiting_approval)

        await store.delete_run("run-1")

        with pytest.raises(UnknownRunError):
            await store.get_run("run-1")
        assert await store.load_tasks("run-1") == {}
        assert await store.load_events("run-1") == []
        assert await store.get_approval("run-1", "t2") is None
        assert [a.run_id for a in await store.list_approvals()] == ["keep"]
        assert [run.run_id for run in await store.list_runs()] == ["keep"]
        assert set(await store.load_tasks("keep")) == {"t1"}
        assert len(await store.load_events("keep")) == 1
        with pytest.raises(UnknownRunError):
            await store.delete_run("run-1")
        await store.create_run(run_record("run-1"))  # the id is free again, with nothing old
        assert await store.load_tasks("run-1") == {}

    @store_test
    async def test_deleting_a_running_run_needs_force(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
        with pytest.raises(RunLockedError, match="foreman cancel"):
            await store.delete_run("run-1")
        assert (await store.get_run("run-1")).status is RunStatus.running
        await store.delete_run("run-1", force=True)
        with pytest.raises(UnknownRunError):
            await store.get_run("run-1")


async def _cancelled_run_withdraws_its_pending_approvals(store: Store, *, directly: bool) -> None:
    for run_id in ("run-1", "other"):
        await store.create_run(run_record(run_id))
        await store.request_approval(approval("t1", run_id=run_id))
    await store.request_approval(approval("t2"))
    await store.decide("run-1", "t2", approved=True, note=None)

    if directly:  # paused: cancel_run ends it at once
        await store.update_run("run-1", status=RunStatus.waiting_approval)
        await store.cancel_run("run-1")
    else:  # running: its process records the cancellation
        await store.update_run("run-1", status=RunStatus.cancelled)

    assert [(a.run_id, a.task_id) for a in await store.list_approvals()] == [("other", "t1")]
    withdrawn = await store.get_approval("run-1", "t1")
    assert withdrawn is not None and withdrawn.status is ApprovalStatus.rejected
    assert withdrawn.note == "the run was cancelled"
    kept = await store.get_approval("run-1", "t2")
    assert kept is not None and kept.status is ApprovalStatus.approved
    with pytest.raises(ApprovalError, match="already rejected"):
        await store.decide("run-1", "t1", approved=True, note=None)
