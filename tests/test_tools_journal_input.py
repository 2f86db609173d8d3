"""A task's stored tool turns answer only the input that asked them: a task whose input
changed before it ran again (a replan changed its instructions, a dependency ran again)
asks its model anew instead of replaying turns meant for other instructions."""

from __future__ import annotations

from foreman.engine.tooling import ToolLoop
from foreman.models.base import ToolCall
from foreman.testing import ScriptedModel
from foreman.tools import tool
from foreman.tools.records import ToolCallRecord, ToolTurnRecord
from helpers import worker


class Journal:
    """An in-memory tool journal, kept across the loop's executions."""

    def __init__(self) -> None:
        self.turns: dict[tuple[int, int], ToolTurnRecord] = {}
        self.calls: dict[int, ToolCallRecord] = {}

    async def load(self, task_id: str) -> tuple[list[ToolTurnRecord], list[ToolCallRecord]]:
        return list(self.turns.values()), list(self.calls.values())

    async def save_turn(self, record: ToolTurnRecord) -> None:
        self.turns[(record.loop, record.turn)] = record

    async def save_call(self, record: ToolCallRecord) -> None:
        self.calls[record.seq] = record


@tool
def look(topic: str) -> str:
    """Look a topic up."""
    return f"notes on {topic}"


def loop(model: ScriptedModel, journal: Journal) -> ToolLoop:
    return ToolLoop(
        run_id="r1",
        task_id="t1",
        worker=worker("calc", tools=("look",)),
        tools=[look],
        models=[model],
        emit=lambda event: None,
        journal=journal,
    )


async def test_stored_turns_are_replayed_for_the_same_input() -> None:
    journal = Journal()
    first = ScriptedModel([[ToolCall(id="c1", name="look", arguments={"topic": "a"})], "A"])
    assert (await loop(first, journal).run("system", "about a")).output == "A"

    again = ScriptedModel([])
    assert (await loop(again, journal).run("system", "about a")).output == "A"
    assert again.requests == []  # nothing asked twice


async def test_a_changed_input_asks_the_model_anew() -> None:
    journal = Journal()
    first = ScriptedModel([[ToolCall(id="c1", name="look", arguments={"topic": "a"})], "A"])
    await loop(first, journal).run("system", "about a")

    changed = ScriptedModel([[ToolCall(id="c1", name="look", arguments={"topic": "b"})], "B"])
    outcome = await loop(changed, journal).run("system", "about b, now")

    assert outcome.output == "B"
    assert changed.requests[0].messages[0].content == "about b, now"
    assert changed.requests[1].messages[-1].tool_results[0].content == "notes on b"
