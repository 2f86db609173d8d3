"""Approvals: a person's decision on a risky task, and the one execution it covers."""

from __future__ import annotations

import time

import pytest

from foreman.errors import ApprovalError, UnknownRunError
from foreman.store.base import ApprovalStatus, Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import approval, run_record


class ApprovalTests(Harness):
    """Requests are idempotent, decided once, and each approval is used up by one start."""

    @store_test
    async def test_requesting_approval_is_idempotent(self, store: Store) -> None:
        await store.create_run(run_record())
        first = approval("t1", requested_at=10.0)

        assert await store.request_approval(first) == first
        again = await store.request_approval(
            approval("t1", instructions="other", requested_at=20.0)
        )
        assert again == first
        assert await store.get_approval("run-1", "t1") == first
        assert await store.list_approvals() == [first]
        assert await store.list_approvals(ApprovalStatus.pending) == [first]
        assert await store.list_approvals(ApprovalStatus.approved) == []

    @store_test
    async def test_a_decision_covers_only_the_inputs_that_were_shown(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.request_approval(approval("t1", inputs='{"inputs": "old"}'))
        await store.decide("run-1", "t1", approved=True, note="ok")

        same = await store.request_approval(approval("t1", inputs='{"inputs": "old"}'))
        assert same.status is ApprovalStatus.approved
        changed = await store.request_approval(approval("t1", inputs='{"inputs": "new"}'))
        assert (changed.status, changed.inputs) == (ApprovalStatus.pending, '{"inputs": "new"}')
        assert await store.list_approvals() == [changed]

    @store_test
    async def test_a_decision_covers_only_the_tool_it_was_for(self, store: Store) -> None:
        await store.create_run(run_record())
        shown = '{"id": 7}'
        await store.request_approval(approval("t1#1", inputs=shown, tool="archive"))
        await store.decide("run-1", "t1#1", approved=True, note="ok")

        other = await store.request_approval(approval("t1#1", inputs=shown, tool="delete"))
        assert (other.status, other.tool) == (ApprovalStatus.pending, "delete")
        assert await store.list_approvals() == [other]

    @store_test
    async def test_approving_records_the_decision(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.request_approval(approval("t1"))
        before = time.time()

        decided = await store.decide("run-1", "t1", approved=True, note="looks fine")

        assert (decided.status, decided.note) == (ApprovalStatus.approved, "looks fine")
        assert decided.decided_at is not None and decided.decided_at >= before
        assert await store.get_approval("run-1", "t1") == decided
        assert await store.list_approvals() == []
        assert await store.list_approvals(ApprovalStatus.approved) == [decided]
        assert await store.list_approvals(None) == [decided]
        # Asking again does not reopen a decided request.
        assert await store.request_approval(approval("t1")) == decided

        with pytest.raises(ApprovalError, match=r"already approved \(looks fine\)"):
            await store.decide("run-1", "t1", approved=False, note=None)
        assert await store.get_approval("run-1", "t1") == decided

    @store_test
    async def test_rejecting_records_the_reason(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.request_approval(approval("t1"))

        decided = await store.decide("run-1", "t1", approved=False, note="wrong recipient")

        assert (decided.status, decided.note) == (ApprovalStatus.rejected, "wrong recipient")
        assert await store.list_approvals(ApprovalStatus.rejected) == [decided]
        with pytest.raises(ApprovalError, match="already rejected"):
            await store.decide("run-1", "t1", approved=True, note=None)

    @store_test
    async def test_deciding_a_task_without_a_request_says_it_needs_none(self, store: Store) -> None:
        await store.create_run(run_record())
        with pytest.raises(ApprovalError, match="not waiting for approval") as raised:
            await store.decide("run-1", "t9", approved=True, note=None)
        assert "'t9'" in str(raised.value) and "foreman approvals" in str(raised.value)
        with pytest.raises(ApprovalError, match="not waiting for approval"):
            await store.decide("nope", "t1", approved=True, note=None)

    @store_test
    async def test_approvals_are_decided_independently(self, store: Store) -> None:
        await store.create_run(run_record("run-1"))
        await store.create_run(run_record("run-2"))
        one = await store.request_approval(approval("t1", requested_at=1.0))
        two = await store.request_approval(approval("t2", requested_at=2.0))
        three = await store.request_approval(approval("t3", requested_at=3.0))
        other = await store.request_approval(approval("t1", run_id="run-2", requested_at=4.0))
        assert await store.list_approvals() == [one, two, three, other]

        rejected = await store.decide("run-1", "t2", approved=False, note="no")
        approved = await store.decide("run-1", "t1", approved=True, note=None)

        assert await store.list_approvals() == [three, other]
        assert await store.list_approvals(None) == [approved, rejected, three, other]
        assert (await store.get_approval("run-1", "t3")) == three
        assert (await store.get_approval("run-2", "t1")) == other
        assert approved.note is None and approved.status is ApprovalStatus.approved

    @store_test
    async def test_an_approval_covers_one_started_execution(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.request_approval(approval("t1"))
        with pytest.raises(ApprovalError):  # pending: nothing approved to start
            await store.start_approved("run-1", "t1")
        await store.decide("run-1", "t1", approved=True, note="go")

        started = await store.start_approved("run-1", "t1")
        assert started.status is ApprovalStatus.approved and started.started_at is not None
        assert not started.may_have_run
        assert await store.get_approval("run-1", "t1") == started  # written at once

        # Started again (the first execution never settled): used up, pending, may have run.
        again = await store.start_approved("run-1", "t1")
        assert (again.status, again.may_have_run) == (ApprovalStatus.pending, True)
        assert (again.started_at, again.decided_at, again.note) == (None, None, None)
        assert await store.list_approvals() == [again]
        with pytest.raises(ApprovalError):
            await store.start_approved("run-1", "t1")

        decided = await store.decide("run-1", "t1", approved=True, note=None)
        assert decided.may_have_run
        restarted = await store.start_approved("run-1", "t1")
        assert restarted.status is ApprovalStatus.approved and restarted.started_at is not None

    @store_test
    async def test_starting_an_approval_of_an_unknown_run_or_task_is_an_error(
        self, store: Store
    ) -> None:
        await store.create_run(run_record())
        with pytest.raises(UnknownRunError):
            await store.start_approved("nope", "t1")
        with pytest.raises(ApprovalError):
            await store.start_approved("run-1", "t9")
