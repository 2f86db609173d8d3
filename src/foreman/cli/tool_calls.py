"""Rendering the tool calls of a run or task (``show RUN --calls``, ``show RUN TASK``):
which tool, for which task, its arguments, outcome and latency. Every tool name,
argument and result is model or tool text: shown literally, never as markup."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from foreman.cli.calls import offset, one_line, seconds
from foreman.cli.text import literal
from foreman.store.base import RunRecord
from foreman.tools.records import ToolCallRecord

OUTCOME_STYLE = {"ok": "green", "error": "red", "refused": "magenta", "rejected": "yellow"}


def tool_calls_table(run: RunRecord, calls: Sequence[ToolCallRecord], *, width: int = 40) -> Table:
    """One row per tool call, in the order they started; a call with no outcome started
    and never finished (the process died during it)."""
    table = Table(title=f"Tool calls of {run.run_id}", box=None, padding=(0, 1), pad_edge=False)
    for column in ("key", "at", "tool", "arguments", "outcome", "took", "result"):
        wraps = column in ("arguments", "result")
        table.add_column(column, no_wrap=not wraps, overflow="fold")
    for call in calls:
        outcome = call.outcome.value if call.outcome else "started"
        table.add_row(
            Text(literal(call.key)),
            Text(offset(call.started_at - run.created_at)),
            Text(literal(call.tool), style="cyan"),
            Text(literal(one_line(json.dumps(call.arguments, ensure_ascii=False), width))),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "bold red")),
            Text(seconds(call.latency) if call.latency is not None else "-"),
            Text(literal(one_line(call.result or "", width))),
        )
    return table


def tool_calls_json(calls: Sequence[ToolCallRecord]) -> list[dict]:
    return [{"key": call.key, **call.model_dump(mode="json")} for call in calls]
