"""The tool loops' journal: turns and tool calls, a finished call final, per run and task.

Optional: a store without a tool journal (``Store.supports_tool_journal`` false) skips
these checks, and its runs' tool calls are not protected across a crash.
"""

from __future__ import annotations

import pytest

from foreman.models.base import ModelResponse, ToolCall
from foreman.store.base import Store
from foreman.testing.store_conformance._harness import Harness, store_test
from foreman.testing.store_conformance.records import call, run_record
from foreman.tools.records import (
    ToolCallRecord,
    ToolCallStatus,
    ToolOutcome,
    ToolTurnRecord,
    idempotency_key,
)


def tool_call(run_id: str, task_id: str, seq: int, **fields: object) -> ToolCallRecord:
    fields.setdefault("started_at", float(seq))
    return ToolCallRecord(
        run_id=run_id,
        task_id=task_id,
        seq=seq,
        turn=1,
        call_id=f"call_{seq}",
        tool="append",
        worker="w",
        arguments={"line": f"l{seq}"},
        idempotency_key=idempotency_key(run_id, task_id, seq),
        **fields,
    )


def finished(record: ToolCallRecord, result: str = "done") -> ToolCallRecord:
    return record.model_copy(
        update={
            "status": ToolCallStatus.finished,
            "outcome": ToolOutcome.ok,
            "result": result,
            "latency": 0.25,
            "finished_at": record.started_at + 1,
        }
    )


def turn(run_id: str, task_id: str, number: int, *, loop: int = 0) -> ToolTurnRecord:
    response = ModelResponse(
        text=f"turn {number}",
        tool_calls=[ToolCall(id=f"c{number}", name="append", arguments={"line": "x"})],
        model="scripted",
    )
    return ToolTurnRecord(run_id=run_id, task_id=task_id, loop=loop, turn=number, response=response)


class ToolJournalTests(Harness):
    """``save_tool_turn``, ``save_tool_call``, ``list_tool_turns``, ``list_tool_calls``."""

    @staticmethod
    def _journal(store: Store) -> None:
        if not store.supports_tool_journal:
            pytest.skip(f"{type(store).__name__} keeps no tool journal")

    @store_test
    async def test_a_tool_call_is_started_then_finished_and_then_final(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        started = tool_call("r1", "t1", 1)
        await store.save_tool_call(started)
        assert await store.list_tool_calls(run_id="r1") == [started]
        done = finished(started)
        await store.save_tool_call(done)
        await store.save_tool_call(started)  # a late write of the start changes nothing
        assert await store.list_tool_calls(run_id="r1") == [done]
        assert (await store.list_tool_calls(run_id="r1"))[0].key == "t1#1"

    @store_test
    async def test_tool_calls_are_listed_per_run_and_task_oldest_first(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        await store.create_run(run_record("r2"))
        await store.save_tool_call(tool_call("r1", "t2", 1, started_at=3.0))
        await store.save_tool_call(tool_call("r1", "t1", 2, started_at=2.0))
        await store.save_tool_call(tool_call("r1", "t1", 1, started_at=1.0))
        await store.save_tool_call(tool_call("r2", "t1", 1))
        listed = await store.list_tool_calls(run_id="r1")
        assert [(c.task_id, c.seq) for c in listed] == [("t1", 1), ("t1", 2), ("t2", 1)]
        of_t1 = await store.list_tool_calls(run_id="r1", task_id="t1")
        assert [c.seq for c in of_t1] == [1, 2]
        assert await store.list_tool_calls(run_id="nothing") == []

    @store_test
    async def test_turns_are_kept_per_task_loop_and_turn(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        for record in (turn("r1", "t1", 2), turn("r1", "t1", 1), turn("r1", "t1", 1, loop=1)):
            await store.save_tool_turn(record)
        await store.save_tool_turn(turn("r1", "t2", 1))
        turns = await store.list_tool_turns("r1", "t1")
        assert [(t.loop, t.turn) for t in turns] == [(0, 1), (0, 2), (1, 1)]
        assert turns[0] == turn("r1", "t1", 1).model_copy(update={"at": turns[0].at})
        assert len(await store.list_tool_turns("r1")) == 4

    @store_test
    async def test_a_turn_is_stored_with_the_ledger_records_so_far(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        await store.save_tool_turn(turn("r1", "t1", 1), [call("c1", "r1"), call("c2", "r1")])
        assert [c.call_id for c in await store.list_calls(run_id="r1")] == ["c1", "c2"]
        assert (await store.get_run("r1")).calls == 2

    @store_test
    async def test_deleting_a_run_deletes_its_tool_journal(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        await store.save_tool_turn(turn("r1", "t1", 1))
        await store.save_tool_call(tool_call("r1", "t1", 1))
        await store.delete_run("r1", force=True)
        assert await store.list_tool_calls(run_id="r1") == []
        assert await store.list_tool_turns("r1") == []

    @store_test
    async def test_a_started_tool_call_outlives_the_process(self, store: Store) -> None:
        self._journal(store)
        await store.create_run(run_record("r1"))
        started = tool_call("r1", "t1", 1)
        await store.save_tool_call(started)
        await store.save_tool_turn(turn("r1", "t1", 1))
        await store.aclose()
        again = await self.reopen()
        try:
            assert await again.list_tool_calls(run_id="r1") == [started]
            assert len(await again.list_tool_turns("r1", "t1")) == 1
        finally:
            await again.aclose()
