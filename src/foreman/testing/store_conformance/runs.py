"""Runs, plans, task checkpoints and events: the state a run is resumed from."""

from __future__ import annotations

import pytest

from foreman.errors import StoreError, UnknownRunError
from foreman.events import Assembled, TaskFailed, TaskFinished, TaskStarted
from foreman.models.base import Usage
from foreman.results import RunStatus, TaskStatus
from foreman.store.base import LeaseOwner, Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import (
    approval,
    as_stored,
    call,
    plan,
    result,
    run_record,
)


class RunTests(Harness):
    """A run's record, its plan versions, task checkpoints and events."""

    @store_test
    async def test_run_round_trips(self, store: Store) -> None:
        settings = {"model": "local", "max_tasks": 4, "team": ["researcher", "writer"]}
        created = run_record("run-1", settings=settings, created_at=100.0, updated_at=100.0)
        await store.create_run(created)

        run = await store.get_run("run-1")

        assert run.run_id == "run-1"
        assert run.request == "request of run-1"
        assert run.status is RunStatus.running
        assert run.settings == settings
        assert (run.plan, run.plan_version, run.answer, run.error) == (None, 0, None, None)
        assert run.usage == Usage()
        assert (run.created_at, run.updated_at) == (100.0, 100.0)

    @store_test
    async def test_unknown_run_is_a_helpful_error(self, store: Store) -> None:
        with pytest.raises(UnknownRunError, match=r"No run 'nope'") as raised:
            await store.get_run("nope")
        assert isinstance(raised.value, StoreError)

    @store_test
    async def test_writes_to_an_unknown_run_raise_unknown_run(self, store: Store) -> None:
        with pytest.raises(UnknownRunError, match="nope"):
            await store.update_run("nope", status=RunStatus.succeeded)
        with pytest.raises(UnknownRunError, match="nope"):
            await store.save_plan("nope", plan("t1"))
        with pytest.raises(UnknownRunError, match="nope"):
            await store.save_task("nope", result("t1"))
        with pytest.raises(UnknownRunError, match="nope"):
            await store.acquire_lease("nope", LeaseOwner(), ttl=60)
        with pytest.raises(UnknownRunError, match="nope"):
            await store.request_approval(approval("t1", run_id="nope"))
        with pytest.raises(UnknownRunError, match="nope"):
            await store.save_calls("nope", [call("c1", run_id="nope")])
        assert await store.list_runs() == []

    @store_test
    async def test_reads_of_an_unknown_run_are_empty(self, store: Store) -> None:
        assert await store.load_tasks("nope") == {}
        assert await store.load_events("nope") == []
        assert await store.get_approval("nope", "t1") is None

    @store_test
    async def test_update_run_sets_status_answer_error_and_usage(self, store: Store) -> None:
        await store.create_run(run_record("run-1", created_at=1.0, updated_at=1.0))

        await store.update_run(
            "run-1", status=RunStatus.aborted, error="t2 failed", usage=Usage(input_tokens=7)
        )
        run = await store.get_run("run-1")
        assert (run.status, run.answer, run.error) == (RunStatus.aborted, None, "t2 failed")
        assert run.usage == Usage(input_tokens=7)
        assert run.updated_at > 1.0
        [summary] = await store.list_runs()  # the list says why too (`runs` shows a limit)
        assert summary.error == "t2 failed"

        # Without usage the stored usage stays; answer and error are set as given.
        await store.update_run("run-1", status=RunStatus.succeeded, answer="42")
        run = await store.get_run("run-1")
        assert (run.status, run.answer, run.error) == (RunStatus.succeeded, "42", None)
        assert run.usage == Usage(input_tokens=7)

    @store_test
    async def test_list_runs_newest_first_with_counts_and_cost(self, store: Store) -> None:
        # A priced run: each task at the model that answered it, the rest at the run's model.
        await store.create_run(
            run_record("priced", settings={"model": "openai:gpt-4o-mini"}, created_at=3.0)
        )
        await store.save_plan("priced", plan("t1"))
        await store.save_plan("priced", plan("t1", "t2", "t3", "t4"))
        await store.save_task(
            "priced",
            result(
                "t1", model="openai:gpt-4o-mini", usage=Usage(input_tokens=1000, output_tokens=500)
            ),
        )
        await store.save_task(
            "priced",
            result(
                "t2",
                model="anthropic:claude-haiku-4-5",
                usage=Usage(input_tokens=2000, output_tokens=1000),
            ),
        )
        await store.save_task(
            "priced",
            result(
                "t3",
                TaskStatus.failed,
                model="openai:gpt-4o-mini",
                usage=Usage(input_tokens=100),
                output=None,
            ),
        )
        await store.update_run(
            "priced", status=RunStatus.partial, usage=Usage(input_tokens=10000, output_tokens=4000)
        )
        # A local run costs nothing; an unknown model has no price at all.
        await store.create_run(run_record("local", settings={"model": "local"}, created_at=2.0))
        await store.save_task(
            "local", result("t1", model="local:smollm2", usage=Usage(input_tokens=50))
        )
        await store.update_run("local", status=RunStatus.running, usage=Usage(input_tokens=500))
        await store.create_run(
            run_record("unknown", settings={"model": "mystery-7b"}, created_at=1.0)
        )
        await store.update_run("unknown", status=RunStatus.running, usage=Usage(output_tokens=10))

        runs = await store.list_runs()

        assert [run.run_id for run in runs] == ["priced", "local", "unknown"]
        priced, local, unknown = runs
        assert (priced.tasks, priced.tasks_done, priced.status) == (4, 2, RunStatus.partial)
        assert priced.usage == Usage(input_tokens=10000, output_tokens=4000)
        # t1 $0.00045 + t2 $0.007 + t3 $0.000015 + the rest (6900 in, 2500 out) $0.002535
        assert priced.cost == pytest.approx(0.01)
        assert priced.request == "request of priced"
        assert (local.tasks, local.tasks_done, local.cost) == (0, 1, 0.0)
        assert (unknown.tasks, unknown.tasks_done, unknown.cost) == (0, 0, None)
        assert [run.run_id for run in await store.list_runs(limit=2)] == ["priced", "local"]

    @store_test
    async def test_tasks_done_counts_the_plans_tasks_not_for_each_items(self, store: Store) -> None:
        """``runs`` read "6/3" for a plan of 3 whose for-each task ran 3 items: done and
        total count the same tasks, the latest plan's."""
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1", "t2", "t3"))
        for task_id in ("t1", "t2.1", "t2.2", "t2.3", "t2"):
            await store.save_task("run-1", result(task_id))
        await store.save_task("run-1", result("t3", TaskStatus.failed, output=None))

        [summary] = await store.list_runs()
        assert (summary.tasks, summary.tasks_done) == (3, 2)

    @store_test
    async def test_plan_versions_count_up_and_the_latest_wins(self, store: Store) -> None:
        await store.create_run(run_record())
        first, second = plan("t1"), plan("t1", "t2")

        assert (await store.get_run("run-1")).plan_usage == Usage()
        assert await store.save_plan("run-1", first, Usage(input_tokens=9)) == 1
        assert await store.save_plan("run-1", second, Usage(input_tokens=30, output_tokens=12)) == 2

        run = await store.get_run("run-1")
        assert (run.plan, run.plan_version) == (second, 2)
        assert run.plan_usage == Usage(input_tokens=30, output_tokens=12)
        assert await store.save_plan("run-1", first) == 3  # usage is optional
        assert (await store.get_run("run-1")).plan_usage == Usage()

    @store_test
    async def test_save_task_is_a_delta_and_round_trips_every_field(self, store: Store) -> None:
        await store.create_run(run_record())
        text = result(
            "t1",
            output="plain text, with ünïcode and\nnewlines",
            attempts=3,
            usage=Usage(input_tokens=120, output_tokens=45),
            latency=1.25,
            model="openai:gpt-4o-mini",
            revisions=1,
            approved=False,
            missing_inputs=["t0"],
            input="## Task\ndo t1",
        )
        structured = result(
            "t2",
            output={"title": "x", "items": [1, 2.5, None, {"nested": True}]},
            model="local",
            approved=True,
        )
        await store.save_task("run-1", text)
        await store.save_task("run-1", structured)
        assert await store.load_tasks("run-1") == {"t1": text, "t2": structured}

        failed = result("t1", TaskStatus.failed, output=None, error="timed out", attempts=4)
        await store.save_task("run-1", failed)  # replaces t1, leaves t2 alone
        assert await store.load_tasks("run-1") == {"t1": failed, "t2": structured}

        waiting = result("t3", TaskStatus.waiting, output=None)
        skipped = result("t4", TaskStatus.skipped, output=None, missing_inputs=["t3"])
        await store.save_task("run-1", waiting)
        await store.save_task("run-1", skipped)
        loaded = await store.load_tasks("run-1")
        assert loaded == {"t1": failed, "t2": structured, "t3": waiting, "t4": skipped}
        assert loaded["t2"].output == {"title": "x", "items": [1, 2.5, None, {"nested": True}]}

    @store_test
    async def test_tasks_of_runs_are_kept_apart(self, store: Store) -> None:
        await store.create_run(run_record("a"))
        await store.create_run(run_record("b"))
        await store.save_task("a", result("t1", output="a's"))
        await store.save_task("b", result("t1", output="b's"))
        assert (await store.load_tasks("a"))["t1"].output == "a's"
        assert (await store.load_tasks("b"))["t1"].output == "b's"

    @store_test
    async def test_events_are_appended_in_order(self, store: Store) -> None:
        await store.create_run(run_record())
        first = [
            TaskStarted(run_id="run-1", task_id="t1", worker="researcher"),
            TaskFinished(
                run_id="run-1",
                task_id="t1",
                worker="researcher",
                output={"k": [1, 2]},
                usage=Usage(input_tokens=3),
                latency=0.5,
                attempts=1,
            ),
        ]
        second = [
            TaskStarted(run_id="run-1", task_id="t2", worker="researcher"),
            TaskFailed(run_id="run-1", task_id="t2", worker="researcher", error="x", policy="skip"),
        ]
        last = [Assembled(run_id="run-1", method="single", answer="done")]

        await store.save_task("run-1", result("t1"), first)
        await store.save_task("run-1", result("t3"))  # no events
        await store.save_task("run-1", result("t2", TaskStatus.failed), second)
        await store.update_run("run-1", status=RunStatus.partial, answer="done", events=last)

        events = await store.load_events("run-1")
        assert [event["type"] for event in events] == [
            "task_started",
            "task_finished",
            "task_started",
            "task_failed",
            "assembled",
        ]
        assert events == as_stored(first + second + last)

    @store_test
    async def test_callers_cannot_alias_stored_state(self, store: Store) -> None:
        await store.create_run(run_record())
        saved = result("t1", output={"k": "v"})
        await store.save_task("run-1", saved)
        saved.output["k"] = "changed after saving"
        loaded = await store.load_tasks("run-1")
        loaded["t1"].output["k"] = "changed after loading"
        assert (await store.load_tasks("run-1"))["t1"].output == {"k": "v"}

        usage = Usage(input_tokens=1)
        await store.update_run("run-1", status=RunStatus.running, usage=usage)
        usage.input_tokens = 99
        (await store.list_runs())[0].usage.input_tokens = 98
        (await store.get_run("run-1")).usage.input_tokens = 97
        assert (await store.get_run("run-1")).usage == Usage(input_tokens=1)

        await store.update_run(
            "run-1",
            status=RunStatus.running,
            events=[TaskStarted(run_id="run-1", task_id="t1", worker="w")],
        )
        (await store.load_events("run-1"))[0]["task_id"] = "changed"
        assert (await store.load_events("run-1"))[0]["task_id"] == "t1"

        requested = approval("t1")
        await store.request_approval(requested)
        requested.instructions = "changed after requesting"
        stored = await store.get_approval("run-1", "t1")
        assert stored is not None and stored.instructions == "do t1"

    @store_test
    async def test_cache_tokens_are_kept_wherever_tokens_are(self, store: Store) -> None:
        spent = Usage(
            input_tokens=10, output_tokens=20, cache_read_tokens=30, cache_write_tokens=40
        )
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1"), spent)
        await store.save_task("run-1", result("t1", usage=spent, model="local"))
        await store.update_run("run-1", status=RunStatus.succeeded, usage=spent + spent)

        run = await store.get_run("run-1")
        assert run.plan_usage == spent
        assert run.usage == spent + spent
        assert (await store.load_tasks("run-1"))["t1"].usage == spent
        assert (await store.list_runs())[0].usage == spent + spent

    # --- closing, and what survives it ---------------------------------------------------

    @store_test
    async def test_update_settings_replaces_the_runs_settings_durably(self, store: Store) -> None:
        """``update_settings``: what a later ``resume`` rebuilds the run from (a budget
        raised on resume). A store without it is skipped: resume then keeps the old
        behaviour, the raised budget for that execution only."""
        settings = {"model": "local", "budget": {"max_calls": 3}}
        await store.create_run(run_record(settings=settings, created_at=5.0))
        await store.update_run("run-1", status=RunStatus.over_budget, error="calls")
        before = await store.get_run("run-1")
        raised = {"model": "local", "budget": {"max_calls": 10, "max_cost_usd": 0.5}}
        try:
            await store.update_settings("run-1", raised)
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} has no update_settings")
        raised["budget"]["max_calls"] = 99  # the caller's dict is not the stored one
        expected = before.model_copy(
            update={
                "settings": {"model": "local", "budget": {"max_calls": 10, "max_cost_usd": 0.5}}
            }
        )
        after = await store.get_run("run-1")
        assert after.model_dump(exclude={"updated_at"}) == expected.model_dump(
            exclude={"updated_at"}
        )
        with pytest.raises(UnknownRunError):
            await store.update_settings("nope", raised)
        if self.durable:
            await store.aclose()
            reopened = await self.reopen()
            try:
                assert (await reopened.get_run("run-1")).settings == expected.settings
            finally:
                await reopened.aclose()

    @store_test
    async def test_closing_twice_is_harmless(self, store: Store) -> None:
        await store.create_run(run_record())
        await store.save_task("run-1", result("t1"))
        await store.aclose()
        await store.aclose()

    @store_test
    async def test_what_was_written_survives_closing_and_reopening(self, store: Store) -> None:
        """Capability ``reopen_store``: the next process finds every checkpoint."""
        events = [TaskStarted(run_id="run-1", task_id="t1", worker="researcher")]
        await store.create_run(run_record(settings={"model": "local"}, created_at=5.0))
        await store.save_plan(
            "run-1", plan("t1", "t2"), Usage(input_tokens=9), [call("p1", task_id=None)]
        )
        await store.save_task("run-1", result("t1", output={"a": 1}), events, [call("c1")])
        await store.request_approval(approval("t2"))
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
        await store.update_run("run-1", status=RunStatus.waiting_approval, answer="so far")
        written = await _everything(store)
        await store.aclose()

        reopened = await self.reopen()
        try:
            assert await _everything(reopened) == written
            assert written[0].plan == plan("t1", "t2") and written[0].calls == 2
        finally:
            await reopened.aclose()


async def _everything(store: Store) -> tuple[object, ...]:
    """What the store holds about ``run-1``, through every reader."""
    return (
        await store.get_run("run-1"),
        await store.list_runs(),
        await store.load_tasks("run-1"),
        await store.load_events("run-1"),
        await store.list_approvals(None),
        await store.list_calls(run_id="run-1", with_prompts=True),
    )
