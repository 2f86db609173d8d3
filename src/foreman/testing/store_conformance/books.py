"""The books invariant: a run's tokens, cost and call count are the sum of its ledger.

``Books.of`` (``foreman.ledger.books``) is the reference sum; a store may compute it any way
it likes (SQLite sums in SQL) as long as ``get_run`` and ``list_runs`` agree with it.
"""

from __future__ import annotations

import pytest

from foreman.ledger.books import Books
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.models.base import Usage
from foreman.results import RunStatus
from foreman.store.base import RunRecord, RunSummary, Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import call, plan, result, run_record

#: Not a price anyone knows: calls on it leave a run's cost unknown.
UNPRICED = "mystery-7b"


async def books_of(store: Store, run_id: str) -> Books:
    return Books.of(await store.list_calls(run_id=run_id))


def assert_books(run: RunRecord | RunSummary, books: Books) -> None:
    """``run`` (as ``get_run`` or ``list_runs`` reads it) carries exactly ``books``."""
    cost = run.cost_usd if isinstance(run, RunRecord) else run.cost
    assert run.usage == books.usage
    assert sorted(run.unpriced) == sorted(books.unpriced)
    if books.cost_usd is None:
        assert cost is None
    else:
        assert cost == pytest.approx(books.cost_usd, rel=1e-9, abs=1e-12)
    if isinstance(run, RunRecord):
        assert run.calls == books.calls


class BooksTests(Harness):
    """``RunRecord`` and ``RunSummary`` books equal the sum of ``list_calls`` rows."""

    @store_test
    async def test_a_runs_books_are_the_sum_of_its_ledger(self, store: Store) -> None:
        await store.create_run(run_record(settings={"model": "openai:gpt-4o-mini"}))
        await store.create_run(run_record("other"))
        cached = Usage(input_tokens=900, output_tokens=80, cache_read_tokens=4000)
        await store.save_plan(
            "run-1",
            plan("t1", "t2"),
            Usage(input_tokens=300, output_tokens=50),
            [call("p1", task_id=None, usage=Usage(input_tokens=300, output_tokens=50))],
        )
        # t1: refused (billed nothing), then answered by a fallback on another provider,
        # then reviewed on the local model.
        await store.save_task(
            "run-1",
            result("t1"),
            calls=[
                call("t1-1", status=CallStatus.error, usage=Usage(), cost_usd=0.0),
                call(
                    "t1-2",
                    model="anthropic:claude-haiku-4-5",
                    attempt=2,
                    usage=cached,
                    cost_usd=0.0021,
                ),
                call("t1-3", model="local", purpose=CallPurpose.review, attempt=3, cost_usd=0.0),
            ],
        )
        # t2 timed out (its input estimated), then a call was in flight when the run stopped.
        timed_out = call("t2-1", task_id="t2", status=CallStatus.timeout, estimated=True)
        in_flight = call("t2-2", task_id="t2", status=CallStatus.started, attempt=2, estimated=True)
        await store.save_calls("run-1", [timed_out.model_copy(update={"cost_usd": 0.00003})])
        await store.save_calls("run-1", [in_flight])
        # The synthesis had no price when it was made: the books price it at read time.
        synthesis = call("s1", task_id=None, purpose=CallPurpose.synthesis, cost_usd=None)
        await store.update_run(
            "run-1",
            status=RunStatus.interrupted,
            usage=Usage(input_tokens=1),  # not what the books say: the ledger wins
            calls=[synthesis],
        )
        await store.save_calls("other", [call("o1", "other", usage=Usage(input_tokens=7))])

        run = await store.get_run("run-1")
        books = await books_of(store, "run-1")

        assert_books(run, books)
        assert run.calls == 7
        # The plan, t1's fallback, and four calls of 100 + 20 (review, t2 twice, synthesis).
        four = Usage(input_tokens=400, output_tokens=80)
        assert run.usage == Usage(input_tokens=300, output_tokens=50) + cached + four
        assert run.cost_usd is not None and run.cost_usd > 0.0021 + 0.00003
        assert run.unpriced == []
        assert_books(await store.get_run("other"), await books_of(store, "other"))

    @store_test
    async def test_a_call_without_a_known_price_leaves_the_cost_unknown(self, store: Store) -> None:
        await store.create_run(run_record())
        unpriced = call("c2", model=UNPRICED, cost_usd=None, usage=Usage(input_tokens=50))
        refused = call(
            "c3", model="nobody-knows-me", status=CallStatus.error, usage=Usage(), cost_usd=None
        )  # no tokens spent: no price needed
        await store.save_calls("run-1", [call("c1", cost_usd=0.002), unpriced, refused])

        run = await store.get_run("run-1")
        books = await books_of(store, "run-1")

        assert (books.cost_usd, books.unpriced) == (None, [UNPRICED])
        assert_books(run, books)
        assert run.usage == Usage(input_tokens=150, output_tokens=20) and run.calls == 3
        [summary] = await store.list_runs()
        assert_books(summary, books)

    @store_test
    async def test_a_run_without_a_ledger_keeps_its_own_total(self, store: Store) -> None:
        """Runs stored before the ledger existed: ``update_run(usage=...)`` is their total,
        priced the old way (``foreman.models.pricing.run_price``)."""
        spent = Usage(input_tokens=500, output_tokens=40)
        await store.create_run(run_record(settings={"model": "local"}))
        await store.save_task("run-1", result("t1", model="local", usage=spent))
        await store.update_run("run-1", status=RunStatus.succeeded, usage=spent)

        run = await store.get_run("run-1")
        assert await store.list_calls(run_id="run-1") == []
        assert (run.usage, run.calls, run.cost_usd, run.unpriced) == (spent, 0, 0.0, [])
        [summary] = await store.list_runs()
        assert (summary.usage, summary.cost, summary.unpriced) == (spent, 0.0, [])

        # Its first ledger record makes the ledger the books from then on.
        await store.save_calls("run-1", [call("c1", cost_usd=0.001)])
        assert_books(await store.get_run("run-1"), await books_of(store, "run-1"))
        assert (await store.get_run("run-1")).usage == Usage(input_tokens=100, output_tokens=20)

    @store_test
    async def test_list_runs_summaries_carry_the_ledger_books(self, store: Store) -> None:
        await store.create_run(run_record("priced", created_at=3.0))
        await store.save_task(
            "priced",
            result("t1"),
            calls=[call("c1", "priced", cost_usd=0.003), call("c2", "priced", cost_usd=None)],
        )
        await store.create_run(run_record("unpriced", created_at=2.0))
        await store.save_calls("unpriced", [call("c1", "unpriced", model=UNPRICED, cost_usd=None)])
        await store.create_run(run_record("legacy", settings={"model": "local"}, created_at=1.0))
        await store.update_run("legacy", status=RunStatus.partial, usage=Usage(input_tokens=9))

        summaries = {summary.run_id: summary for summary in await store.list_runs()}

        assert list(summaries) == ["priced", "unpriced", "legacy"]
        for run_id in ("priced", "unpriced"):
            books = await books_of(store, run_id)
            assert_books(summaries[run_id], books)
            assert_books(await store.get_run(run_id), books)
        assert summaries["priced"].cost is not None and summaries["priced"].cost > 0.003
        assert summaries["unpriced"].unpriced == [UNPRICED]
        assert summaries["legacy"].usage == Usage(input_tokens=9)
