"""Nested runs: a run carrying out another run's task is linked to it, and the parent's
books are its own ledger plus every nested run's, at every depth, each row once."""

from __future__ import annotations

from foreman.ledger.books import Books
from foreman.models.base import Usage
from foreman.store.base import Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import call, run_record


async def _family(store: Store) -> None:
    """``top`` -> ``top.t2`` -> ``top.t2.c1``, a ledger row (or two) in each, and a
    stranger whose rows belong to nobody here."""
    await store.create_run(run_record("top", created_at=1.0))
    await store.create_run(
        run_record("top.t2", parent_run_id="top", parent_task_id="t2", created_at=2.0)
    )
    await store.create_run(
        run_record("top.t2.c1", parent_run_id="top.t2", parent_task_id="c1", created_at=3.0)
    )
    await store.create_run(run_record("stranger", created_at=0.5))
    await store.save_calls("top", [call("a", "top", usage=Usage(input_tokens=1))])
    await store.save_calls(
        "top.t2",
        [
            call("b", "top.t2", usage=Usage(input_tokens=10)),
            call("c", "top.t2", usage=Usage(output_tokens=20)),
        ],
    )
    await store.save_calls("top.t2.c1", [call("d", "top.t2.c1", usage=Usage(input_tokens=100))])
    await store.save_calls("stranger", [call("e", "stranger", usage=Usage(input_tokens=1000))])


class NestingTests(Harness):
    """Parent links, ``child_runs``, subtree books and ``list_calls(descendants=True)``."""

    @store_test
    async def test_a_nested_run_keeps_its_parent_run_and_task(self, store: Store) -> None:
        await _family(store)
        child = await store.get_run("top.t2")
        assert (child.parent_run_id, child.parent_task_id) == ("top", "t2")
        assert (await store.get_run("top")).parent_run_id is None
        listed = {run.run_id: run for run in await store.list_runs()}
        assert (listed["top.t2.c1"].parent_run_id, listed["top.t2.c1"].parent_task_id) == (
            "top.t2",
            "c1",
        )
        assert [run.run_id for run in await store.child_runs("top")] == ["top.t2"]
        assert [run.run_id for run in await store.child_runs("top.t2")] == ["top.t2.c1"]
        assert await store.child_runs("stranger") == []

    @store_test
    async def test_a_runs_books_add_its_nested_runs_each_row_once(self, store: Store) -> None:
        await _family(store)
        every = await store.list_calls(run_id="top", descendants=True)
        assert sorted(c.call_id for c in every) == ["a", "b", "c", "d"]
        assert [c.call_id for c in await store.list_calls(run_id="top")] == ["a"]
        middle = await store.list_calls(run_id="top.t2", descendants=True)
        assert sorted(c.call_id for c in middle) == ["b", "c", "d"]
        top, books = await store.get_run("top"), Books.of(every)
        assert (top.usage, top.calls) == (books.usage, books.calls)
        assert top.usage == Usage(input_tokens=111, output_tokens=20)
        assert (await store.get_run("top.t2.c1")).usage == Usage(input_tokens=100)
        listed = {run.run_id: run for run in await store.list_runs()}
        assert listed["top"].usage == top.usage
        assert listed["top.t2"].usage == Usage(input_tokens=110, output_tokens=20)
        assert listed["stranger"].usage == Usage(input_tokens=1000)

    @store_test
    async def test_last_and_prefixes_name_top_level_runs_first(self, store: Store) -> None:
        await _family(store)
        assert await store.resolve_run("last") == "top"  # not its newer nested runs
        assert await store.resolve_run("to") == "top"
        assert await store.resolve_run("top.t2.") == "top.t2.c1"
        assert await store.resolve_run("top.t2") == "top.t2"

    @store_test
    async def test_deleting_a_run_deletes_its_nested_runs(self, store: Store) -> None:
        await _family(store)
        await store.delete_run("top", force=True)
        assert [run.run_id for run in await store.list_runs()] == ["stranger"]
        assert [c.call_id for c in await store.list_calls()] == ["e"]
