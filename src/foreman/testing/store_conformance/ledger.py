"""The call ledger: one record per model call attempt, written with the checkpoint that
covers it, read back whole, filtered and in order."""

from __future__ import annotations

import itertools

import pytest

from foreman.errors import UnknownRunError
from foreman.events import TaskStarted
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus
from foreman.models.base import Usage
from foreman.results import RunStatus
from foreman.store.base import LeaseOwner, Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import call, plan, result, run_record


def ids(calls: list[CallRecord]) -> list[str]:
    return [record.call_id for record in calls]


def without_texts(record: CallRecord) -> CallRecord:
    """A record as ``list_calls(with_prompts=False)`` returns it."""
    return record.model_copy(update={"prompt": None, "output": None})


class LedgerTests(Harness):
    """``save_calls`` / ``list_calls``, and ledger records written with checkpoints."""

    @store_test
    async def test_a_call_record_round_trips_every_field(self, store: Store) -> None:
        await store.create_run(run_record())
        full = call(
            "c1",
            task_id="t7",
            purpose=CallPurpose.review,
            parent="task:t7",
            worker="writer",
            model="anthropic:claude-haiku-4-5",
            answered_by="claude-haiku-4-5-20251001",
            attempt=3,
            started_at=1234.5,
            latency=2.25,
            usage=Usage(
                input_tokens=120, output_tokens=45, cache_read_tokens=30, cache_write_tokens=7
            ),
            estimated=True,
            cost_usd=0.0125,
            status=CallStatus.timeout,
            error_type="TimeoutError",
            error="no answer in 30 s, with ünïcode\nand a second line",
            prompt={
                "system": "You are the writer worker.",
                "messages": [{"role": "user", "content": '{"instructions": "do t7"}'}],
            },
            output="a partial answer, ünïcode too",
        )
        bare = call("c2", task_id=None, model="local", cost_usd=None, started_at=1235.0)
        await store.save_calls("run-1", [full, bare])

        assert await store.list_calls(run_id="run-1", with_prompts=True) == [full, bare]
        assert await store.list_calls(run_id="run-1") == [without_texts(full), bare]
        assert await store.list_calls(run_id="run-1", task_id="t7") == [without_texts(full)]

    @store_test
    async def test_every_status_and_purpose_round_trips(self, store: Store) -> None:
        await store.create_run(run_record())
        settled = [status for status in CallStatus if status.settled]
        records = [
            call(f"c{n}", status=status, purpose=purpose, started_at=float(n))
            for n, (status, purpose) in enumerate(itertools.product(settled, CallPurpose))
        ]
        await store.save_calls("run-1", records)
        assert await store.list_calls(run_id="run-1") == records

    @store_test
    async def test_list_calls_filters_by_run_task_and_time_oldest_first(self, store: Store) -> None:
        for run_id in ("a", "b"):
            await store.create_run(run_record(run_id))
        # Saved out of order: reads come back ordered by start time, across runs too.
        await store.save_calls(
            "a",
            [
                call("a-t2", "a", task_id="t2", started_at=20.0),
                call("a-t1-retry", "a", task_id="t1", started_at=30.0, attempt=2),
                call("a-plan", "a", task_id=None, started_at=5.0),
                call("a-t1", "a", task_id="t1", started_at=10.0),
            ],
        )
        await store.save_calls("b", [call("b-t1", "b", task_id="t1", started_at=15.0)])

        assert ids(await store.list_calls(run_id="a")) == ["a-plan", "a-t1", "a-t2", "a-t1-retry"]
        assert ids(await store.list_calls()) == [
            "a-plan",
            "a-t1",
            "b-t1",
            "a-t2",
            "a-t1-retry",
        ]
        assert ids(await store.list_calls(task_id="t1")) == ["a-t1", "b-t1", "a-t1-retry"]
        assert ids(await store.list_calls(run_id="a", task_id="t1")) == ["a-t1", "a-t1-retry"]
        # ``since`` includes its instant, ``until`` excludes its own.
        assert ids(await store.list_calls(since=15.0)) == ["b-t1", "a-t2", "a-t1-retry"]
        assert ids(await store.list_calls(until=15.0)) == ["a-plan", "a-t1"]
        assert ids(await store.list_calls(since=10.0, until=20.0)) == ["a-t1", "b-t1"]
        assert ids(await store.list_calls(run_id="b", since=16.0)) == []
        assert await store.list_calls(run_id="nope") == []
        assert await store.list_calls(run_id="a", task_id="t9") == []

    @store_test
    async def test_a_settled_record_is_never_replaced_by_a_later_started_one(
        self, store: Store
    ) -> None:
        await store.create_run(run_record())
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)  # executing: started reads so
        started = call("c1", status=CallStatus.started, usage=Usage(input_tokens=40))
        await store.save_calls("run-1", [started])
        assert await store.list_calls(run_id="run-1") == [started]

        # A newer estimate of a call still in flight replaces the older one...
        longer = started.model_copy(update={"usage": Usage(input_tokens=55)})
        await store.save_calls("run-1", [longer])
        assert await store.list_calls(run_id="run-1") == [longer]

        # ...its answer replaces it, and no late ``started`` write, by any path, undoes that.
        answered = call("c1", usage=Usage(input_tokens=50, output_tokens=9), cost_usd=0.001)
        await store.save_calls("run-1", [answered])
        await store.save_calls("run-1", [started])
        await store.save_task("run-1", result("t1"), calls=[longer])
        await store.save_plan("run-1", plan("t1"), calls=[started])
        await store.update_run("run-1", status=RunStatus.running, calls=[started])
        assert await store.list_calls(run_id="run-1") == [answered]
        assert (await store.get_run("run-1")).usage == answered.usage

    @store_test
    async def test_a_later_settled_version_replaces_an_earlier_one(self, store: Store) -> None:
        await store.create_run(run_record())
        cut = call("c1", status=CallStatus.interrupted, usage=Usage(input_tokens=40))
        await store.save_calls("run-1", [cut])
        cancelled = cut.model_copy(update={"status": CallStatus.cancelled, "error": "budget"})
        await store.save_calls("run-1", [cancelled])
        assert await store.list_calls(run_id="run-1") == [cancelled]

    @store_test
    async def test_a_started_record_of_a_run_not_executing_reads_interrupted(
        self, store: Store
    ) -> None:
        in_flight = call("c1", status=CallStatus.started, usage=Usage(input_tokens=40))
        in_flight.estimated = True
        for run_id in ("new", "live", "stopped", "crashed"):
            await store.create_run(run_record(run_id))
            await store.save_calls(run_id, [in_flight.model_copy(update={"run_id": run_id})])
        owner = LeaseOwner()
        await store.acquire_lease("live", owner, ttl=60)
        await store.update_run("stopped", status=RunStatus.interrupted)
        await store.acquire_lease("crashed", owner, ttl=60)
        await store.release_lease("crashed", owner)  # left ``running``: its process is gone

        read = {record.run_id: record for record in await store.list_calls()}
        # A run created and not leased yet, or leased by a live owner, is being executed.
        assert read["new"].status is CallStatus.started
        assert read["live"].status is CallStatus.started
        for run_id in ("stopped", "crashed"):
            record = read[run_id]
            assert record.status is CallStatus.interrupted and record.failed
            assert record.error  # says why: the process ended during the call
            assert (record.usage, record.estimated) == (Usage(input_tokens=40), True)
            assert await store.list_calls(run_id=run_id) == [record]
            # Its estimated tokens are in the books: the provider most likely charged them.
            assert (await store.get_run(run_id)).usage == Usage(input_tokens=40)

    @store_test
    async def test_recent_calls_keeps_the_newest_of_each_purpose_worker_and_model(
        self, store: Store
    ) -> None:
        """``recent_calls(n)``: the newest ``n`` records of each (purpose, worker, model)
        across runs, oldest first and without texts; a rare group is not crowded out."""
        for run_id in ("a", "b"):
            await store.create_run(run_record(run_id))
        groups = {  # call id prefix -> (run, fields); started_at interleaves the groups
            "w": ("a", {"worker": "writer"}),
            "r": ("b", {}),
            "m": ("a", {"model": "anthropic:claude-haiku-4-5"}),
            "v": ("b", {"purpose": CallPurpose.review}),
            "p": ("a", {"task_id": None}),  # planning: no worker
        }
        for n in range(5):
            for index, (prefix, (run_id, fields)) in enumerate(groups.items()):
                at = 10.0 * n + index
                record = call(f"{prefix}{n}", run_id, started_at=at, output="o", **fields)
                await store.save_calls(run_id, [record])
        await store.save_calls("b", [call("rare", "b", worker="rare", started_at=0.5)])

        recent = await store.recent_calls(2)
        assert ids(recent) == ["rare", "w3", "r3", "m3", "v3", "p3", "w4", "r4", "m4", "v4", "p4"]
        assert all(record.output is None for record in recent)
        assert recent == [
            record for record in await store.list_calls() if record.call_id in set(ids(recent))
        ]
        assert len(await store.recent_calls(100)) == 26
        assert ids(await store.recent_calls(1)) == ["rare", "w4", "r4", "m4", "v4", "p4"]

    @store_test
    async def test_checkpoints_write_their_ledger_records(self, store: Store) -> None:
        await store.create_run(run_record())
        planning = call("p1", task_id=None, started_at=1.0)
        first, retry = call("t1-1", started_at=2.0), call("t1-2", started_at=3.0, attempt=2)
        synthesis = call("s1", task_id=None, purpose=CallPurpose.synthesis, started_at=4.0)
        events = [TaskStarted(run_id="run-1", task_id="t1", worker="researcher")]

        await store.save_plan("run-1", plan("t1"), Usage(input_tokens=100), [planning])
        assert ids(await store.list_calls(run_id="run-1")) == ["p1"]
        await store.save_task("run-1", result("t1"), events, [first, retry])
        assert ids(await store.list_calls(run_id="run-1")) == ["p1", "t1-1", "t1-2"]
        await store.update_run("run-1", status=RunStatus.succeeded, answer="a", calls=[synthesis])

        assert await store.list_calls(run_id="run-1") == [planning, first, retry, synthesis]
        assert len(await store.load_events("run-1")) == 1
        assert (await store.get_run("run-1")).calls == 4

    @store_test
    async def test_a_checkpoint_refused_writes_none_of_its_records(self, store: Store) -> None:
        stray = [call("c1", run_id="nope")]
        with pytest.raises(UnknownRunError):
            await store.save_plan("nope", plan("t1"), calls=stray)
        with pytest.raises(UnknownRunError):
            await store.save_task("nope", result("t1"), calls=stray)
        with pytest.raises(UnknownRunError):
            await store.update_run("nope", status=RunStatus.failed, calls=stray)
        with pytest.raises(UnknownRunError):
            await store.save_calls("nope", stray)
        assert await store.list_calls() == []

        await store.create_run(run_record("nope"))  # nothing was kept aside for it either
        assert await store.list_calls(run_id="nope") == []
        assert (await store.get_run("nope")).calls == 0

    @store_test
    async def test_deleting_a_run_deletes_its_ledger(self, store: Store) -> None:
        for run_id in ("run-1", "keep"):
            await store.create_run(run_record(run_id))
            await store.save_task(run_id, result("t1"), calls=[call("c1", run_id)])
            await store.update_run(run_id, status=RunStatus.succeeded, calls=[call("c2", run_id)])

        await store.delete_run("run-1")

        assert await store.list_calls(run_id="run-1") == []
        assert {record.run_id for record in await store.list_calls()} == {"keep"}
        assert ids(await store.list_calls(run_id="keep")) == ["c1", "c2"]
        await store.create_run(run_record("run-1"))  # the id is free again, with no old calls
        assert await store.list_calls(run_id="run-1") == []
        assert (await store.get_run("run-1")).calls == 0

    @store_test
    async def test_callers_cannot_alias_stored_calls(self, store: Store) -> None:
        await store.create_run(run_record())
        saved = call("c1", prompt={"messages": [{"content": "hi"}]}, output="out")
        await store.save_calls("run-1", [saved])
        saved.usage.input_tokens = 1
        assert saved.prompt is not None
        saved.prompt["messages"][0]["content"] = "changed after saving"
        (loaded,) = await store.list_calls(run_id="run-1", with_prompts=True)
        loaded.usage.output_tokens = 2
        assert loaded.prompt is not None
        loaded.prompt["messages"].clear()

        (again,) = await store.list_calls(run_id="run-1", with_prompts=True)
        assert again == call("c1", prompt={"messages": [{"content": "hi"}]}, output="out")
