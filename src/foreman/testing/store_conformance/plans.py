"""Plan versions: every revision kept, with its reason and what it changed."""

from __future__ import annotations

import pytest

from foreman.errors import UnknownRunError
from foreman.ledger.records import CallPurpose
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.store.base import Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import call, plan, run_record


def keeps_revisions(store: Store) -> None:
    """Skip the test for a store that keeps the ``Store`` defaults (no reasons kept)."""
    if type(store).save_revision is Store.save_revision or type(store).list_plans is (
        Store.list_plans
    ):
        pytest.skip(f"{type(store).__name__} keeps the default save_revision and list_plans")


class PlanTests(Harness):
    """``save_revision`` and ``list_plans`` (optional): what ``foreman show`` reads."""

    @store_test
    async def test_revisions_are_versions_with_their_reason_and_changes(self, store: Store) -> None:
        keeps_revisions(store)
        await store.create_run(run_record())
        assert await store.list_plans("run-1") == []
        assert await store.save_plan("run-1", plan("t1", "t2"), Usage(input_tokens=9)) == 1
        changes = PlanChanges(added=["t3"], changed=["t2"], dropped=[])
        revised = plan("t1", "t2", "t3")
        spent = Usage(input_tokens=40, output_tokens=11)
        version = await store.save_revision(
            "run-1", revised, spent, reason="t1 found more", changes=changes
        )
        assert version == 2

        versions = await store.list_plans("run-1")
        assert [v.version for v in versions] == [1, 2]
        first, second = versions
        assert (first.plan, first.reason, first.changes) == (plan("t1", "t2"), None, PlanChanges())
        assert first.usage == Usage(input_tokens=9)
        assert (second.plan, second.reason, second.changes) == (revised, "t1 found more", changes)
        assert second.usage == spent
        assert first.created_at <= second.created_at

        run = await store.get_run("run-1")  # the run's plan is the latest version
        assert (run.plan, run.plan_version) == (revised, 2)

    @store_test
    async def test_a_revision_is_written_with_the_calls_that_wrote_it(self, store: Store) -> None:
        keeps_revisions(store)
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1"))
        row = call("r1", task_id=None, purpose=CallPurpose.replan)
        await store.save_revision(
            "run-1", plan("t1", "t2"), calls=[row], reason="more", changes=PlanChanges()
        )
        stored = await store.list_calls(run_id="run-1")
        assert [(c.call_id, c.purpose, c.parent) for c in stored] == [
            ("r1", CallPurpose.replan, "replan")
        ]

    @store_test
    async def test_versions_of_an_unknown_run_are_an_error(self, store: Store) -> None:
        keeps_revisions(store)
        with pytest.raises(UnknownRunError):
            await store.list_plans("nope")
        with pytest.raises(UnknownRunError):
            await store.save_revision("nope", plan("t1"), reason="x", changes=PlanChanges())

    @store_test
    async def test_plan_versions_outlive_the_store(self, store: Store) -> None:
        keeps_revisions(store)
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1"))
        await store.save_revision(
            "run-1", plan("t1", "t2"), reason="why", changes=PlanChanges(added=["t2"])
        )
        await store.aclose()
        reopened = await self.reopen()
        try:
            versions = await reopened.list_plans("run-1")
            assert [(v.version, v.reason, v.changes.added) for v in versions] == [
                (1, None, []),
                (2, "why", ["t2"]),
            ]
        finally:
            await reopened.aclose()
