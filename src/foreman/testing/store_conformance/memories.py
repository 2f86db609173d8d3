"""Memory: entries kept with their vectors, newest first, filtered by run and embedder,
the oldest evicted past a limit, deleted one by one or cleared, found by similarity."""

from __future__ import annotations

import math

from foreman.store.base import Store
from foreman.store.memories import MemoryEntry
from foreman.testing.store_conformance._harness import Harness, store_test


def entry(text: str, vector: list[float], *, run_id: str = "r1", embedder: str = "e"):
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return MemoryEntry(
        run_id=run_id,
        task_id=f"t-{text}",
        worker="researcher",
        text=text,
        embedder=embedder,
        vector=[x / norm for x in vector],
        created_at=1.0,
    )


class MemoryTests(Harness):
    """``add_memory``, ``list_memories``, ``delete_memory``, ``clear_memories`` and the
    ``search_memories`` built on them."""

    @store_test
    async def test_entries_come_back_newest_first_with_growing_ids(self, store: Store) -> None:
        first = await store.add_memory(entry("a", [1, 0]))
        second = await store.add_memory(entry("b ünïcode \x00", [0, 1], run_id="r2"))
        assert second > first
        listed = await store.list_memories()
        assert [(e.memory_id, e.text) for e in listed] == [(second, "b ünïcode \x00"), (first, "a")]
        assert listed[0].vector == [0.0, 1.0] and listed[0].run_id == "r2"
        assert [e.text for e in await store.list_memories(run_id="r1")] == ["a"]
        assert [e.text for e in await store.list_memories(limit=1)] == ["b ünïcode \x00"]
        await store.add_memory(entry("c", [1, 1], embedder="other"))
        assert [e.text for e in await store.list_memories(embedder="other")] == ["c"]

    @store_test
    async def test_past_the_limit_the_oldest_entries_go(self, store: Store) -> None:
        for text in "abcde":
            await store.add_memory(entry(text, [1, 0]), limit=3)
        assert [e.text for e in await store.list_memories()] == ["e", "d", "c"]
        await store.add_memory(entry("f", [1, 0]), limit=1)
        assert [e.text for e in await store.list_memories()] == ["f"]

    @store_test
    async def test_entries_are_deleted_one_by_one_or_cleared(self, store: Store) -> None:
        kept = await store.add_memory(entry("a", [1, 0]))
        gone = await store.add_memory(entry("b", [0, 1]))
        await store.add_memory(entry("c", [0, 1], run_id="r2"))
        assert await store.delete_memory(gone) is True
        assert await store.delete_memory(gone) is False
        assert await store.clear_memories(run_id="r2") == 1
        assert [e.memory_id for e in await store.list_memories()] == [kept]
        assert await store.clear_memories() == 1
        assert await store.list_memories() == []

    @store_test
    async def test_search_finds_the_most_similar_of_the_same_embedder(self, store: Store) -> None:
        await store.add_memory(entry("east", [1, 0]))
        await store.add_memory(entry("north", [0, 1]))
        await store.add_memory(entry("north-east", [1, 1]))
        await store.add_memory(entry("elsewhere", [1, 0], embedder="other"))
        hits = await store.search_memories([1.0, 0.0], embedder="e", top_k=2)
        assert [h.entry.text for h in hits] == ["east", "north-east"]
        assert hits[0].score == 1.0 and 0.7 < hits[1].score < 0.71
        close = await store.search_memories([1.0, 0.0], embedder="e", top_k=5, min_score=0.5)
        assert [h.entry.text for h in close] == ["east", "north-east"]
        assert await store.search_memories([1.0, 0.0], embedder="none", top_k=5) == []

    @store_test
    async def test_memories_outlive_the_run_they_came_from(self, store: Store) -> None:
        await store.add_memory(entry("a", [1, 0]))
        if self.durable:
            await store.aclose()
            reopened = await self.reopen()
            try:
                assert [e.text for e in await reopened.list_memories()] == ["a"]
            finally:
                await reopened.aclose()
