"""Rendering the ledger: ``show RUN --calls`` (a run's calls) and ``show RUN TASK`` (what
one task's worker and reviewer were sent and said), and the figures ``stats`` shares.

Prompts and outputs are model and user text: they are printed as ``Text``, never as markup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from foreman.cli.render import STATUS_STYLE
from foreman.cli.text import literal
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord
from foreman.models.pricing import cost
from foreman.plan.schema import Task
from foreman.results import TaskResult
from foreman.store.base import RunRecord

#: Colours of call statuses (a call that failed is red; one cut short, yellow).
CALL_STYLE = {
    "ok": "green",
    "started": "yellow",
    "error": "red",
    "timeout": "red",
    "cancelled": "red dim",
    "interrupted": "yellow",
}

NOT_RECORDED = (
    "Prompts and outputs were not recorded for this run (it ran with --no-record-prompts)."
)


# --- figures -------------------------------------------------------------------------------


def money(dollars: float | None) -> str:
    """Dollars as ``runs`` shows them, or ``unknown`` when a model has no price."""
    if dollars is None:
        return "unknown"
    if 0 < dollars < 0.00005:  # would read $0.0000: free, which it was not
        return "<$0.0001"
    return f"${dollars:.4f}" if dollars < 100 else f"${dollars:,.2f}"


def tokens(count: int) -> str:
    """A token count in at most 6 columns: exact below 100,000 (``--json`` is exact)."""
    if count < 100_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count / 1000:.0f}k"
    return f"{count / 1_000_000:.1f}M"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def offset(value: float) -> str:
    """Time since the run started: ``+12.3s``, ``+5m03s``, ``+3h12m``."""
    value = max(0.0, value)
    if value < 60:
        return f"+{value:.1f}s"
    if value < 3600:
        return f"+{int(value // 60)}m{int(value % 60):02d}s"
    return f"+{int(value // 3600)}h{int(value % 3600 // 60):02d}m"


def short_model(model: str) -> str:
    """A model as tables show it: a provider's own id (``claude-sonnet-5-5``) without the
    ``anthropic:``/``openai:`` prefix, so tables fit 80 columns; JSON keeps the name."""
    provider, sep, rest = model.partition(":")
    return rest if sep and provider in ("anthropic", "openai") else model


def what_for(call: CallRecord, run_id: str | None = None) -> str:
    """What a call was for: ``plan``, ``synthesis``, ``t1``, ``t1 review``, ``t2 replay``;
    a call of a run nested in ``run_id`` says where: ``t2 > c1`` (task c1 of the run that
    carries out t2)."""
    if call.task_id is None:
        what = call.purpose.value
    elif call.purpose.value == "task":
        what = call.task_id
    else:
        what = f"{call.task_id} {call.purpose.value}"
    if run_id is None or call.run_id == run_id:
        return what
    return f"{call.run_id.removeprefix(run_id + '.')} > {what}"


def one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def error_of(call: CallRecord) -> str:
    kind = f"{call.error_type}: " if call.error_type else ""
    return kind + (call.error or call.status.value)


def call_cost(call: CallRecord) -> str:
    """A call's dollars; ``-`` for one that spent nothing (refused: providers bill none)."""
    return money(call.cost_usd) if call.usage.total_tokens else "-"


def call_json(call: CallRecord, *, prompts: bool) -> dict[str, Any]:
    """A call as JSON; without ``prompts`` the (unread) prompt and output keys are left
    out rather than shown as null, which would read as 'not recorded'."""
    return call.model_dump(mode="json", exclude=None if prompts else {"prompt", "output"})


def books_json(books: Books) -> dict[str, Any]:
    """Tokens and dollars, under the names ``show --json`` gives a run's."""
    return {
        "usage": books.usage.model_dump(mode="json"),
        "cost_usd": books.cost_usd,
        "unpriced": books.unpriced,
    }


# --- show RUN --calls ----------------------------------------------------------------------


def calls_table(run: RunRecord, calls: Sequence[CallRecord]) -> Table:
    """One row per call attempt, in the order they started; worker and model share a cell
    (two lines) and errors are listed below the table (``call_errors``), so that it fits
    80 columns."""
    table = Table(title=f"Calls of {run.run_id}", box=None, padding=(0, 1), pad_edge=False)
    for column in ("#", "at", "for", "worker/model", "try", "status", "in/out", "cost", "took"):
        words = column in ("for", "worker/model", "status")
        wraps = column in ("for", "worker/model")
        table.add_column(
            column, justify="left" if words else "right", no_wrap=not wraps, overflow="fold"
        )
    for number, call in enumerate(calls, 1):
        spent = f"{tokens(call.usage.input_tokens)}/{tokens(call.usage.output_tokens)}"
        table.add_row(
            Text(str(number)),
            Text(offset(call.started_at - run.created_at)),
            Text(literal(what_for(call, run.run_id))),
            Text.assemble(
                literal(call.worker or "-"), "\n", (literal(short_model(call.model)), "dim")
            ),
            Text(str(call.attempt)),
            Text(call.status.value, style=CALL_STYLE.get(call.status.value, "")),
            Text(("~" if call.estimated else "") + spent),
            Text(call_cost(call)),
            Text(seconds(call.latency) if call.timed else "-"),
        )
    return table


def call_errors(calls: Sequence[CallRecord], run_id: str | None = None) -> list[Text]:
    """``#3 t1 (anthropic:x): RateLimitError: slow down`` for every call that failed."""
    return [
        Text.assemble(
            (f"#{number} ", "bold"),
            literal(f"{what_for(call, run_id)} ({call.model}): "),
            (literal(one_line(error_of(call), 200)), CALL_STYLE.get(call.status.value, "")),
        )
        for number, call in enumerate(calls, 1)
        if call.failed
    ]


def books_line(books: Books, *, what: str) -> Text:
    """``3 calls, 1,234 in / 567 out tokens, $0.0123`` (and why a cost is unknown)."""
    usage = books.usage
    counted = f"{books.calls} call(s)" if books.calls or not usage.total_tokens else "calls unknown"
    line = Text(
        f"{what}: {counted}, {usage.input_tokens:,} in / {usage.output_tokens:,} out"
        f" tokens, {money(books.cost_usd)}"
    )
    if usage.cache_read_tokens or usage.cache_write_tokens:
        line.append(
            f" (cache: {usage.cache_read_tokens:,} read, {usage.cache_write_tokens:,} written)"
        )
    if books.unpriced:
        line.append(literal(f"; no price for {', '.join(books.unpriced)}"), style="dim")
    return line


# --- show RUN TASK -------------------------------------------------------------------------

#: Why a run with tokens has no ledger rows.
BEFORE_LEDGER = "the run was stored before the call ledger existed"


def task_books(
    result: TaskResult | None, calls: Sequence[CallRecord], nested: RunRecord | None = None
) -> Books:
    """A task's books: its ledger rows; for a task carried out by a nested run, that run's
    books; for a run stored before the ledger (no rows, yet tokens on the task's record),
    the record's tokens at the model that answered."""
    if nested is not None and not calls:
        return Books(
            usage=nested.usage,
            cost_usd=nested.cost_usd,
            unpriced=nested.unpriced,
            calls=nested.calls,
        )
    if calls or result is None or not result.usage.total_tokens:
        return Books.of(calls)
    dollars = cost(result.model, result.usage)
    unpriced = [] if dollars is not None else [result.model or "(unknown model)"]
    return Books(usage=result.usage, cost_usd=dollars, unpriced=unpriced)


def task_view(
    run: RunRecord,
    task: Task,
    result: TaskResult | None,
    calls: Sequence[CallRecord],
    *,
    nested: RunRecord | None = None,
) -> Group:
    """The task's instructions, then each of its calls (task, review, replay): status,
    figures, the prompt it was sent and the output it gave; then the task's total. A task
    carried out by a nested run (``nested``) points to that run, and its total is that
    run's."""
    status = result.status.value if result else "not run"
    parts: list[RenderableType] = [
        Text.assemble(
            (literal(f"{run.run_id} / {task.id}"), "bold"),
            literal(f" · {task.worker} · "),
            (status, STATUS_STYLE.get(status, "")),
        ),
        _section("Instructions"),
        Text(literal(task.instructions)),
    ]
    if result is not None and result.error:
        parts += [_section("Error", "bold red"), Text(literal(result.error))]
    books = task_books(result, calls, nested)
    if nested is not None:
        parts.append(
            Text(
                literal(
                    f"\nCarried out by the nested run {nested.run_id}: `foreman show "
                    f"{nested.run_id}` shows its tasks and calls."
                ),
                style="dim",
            )
        )
    elif not calls:
        why = f": {BEFORE_LEDGER}" if books.usage.total_tokens else ""
        parts.append(Text(f"\nNo calls recorded for this task{why}.", style="dim"))
    if run.settings.get("record_prompts") is False:
        parts.append(Text("\n" + NOT_RECORDED, style="yellow"))
    for number, call in enumerate(calls, 1):
        parts += _call_parts(number, call, run.created_at)
    parts.append(Text())
    parts.append(books_line(books, what=literal(f"Task {task.id}")))
    return Group(*parts)


def _section(title: str, style: str = "bold") -> Text:
    return Text.assemble("\n", (title, style))


def _call_parts(number: int, call: CallRecord, start: float) -> list[RenderableType]:
    tokens_text = f"{call.usage.input_tokens:,} in / {call.usage.output_tokens:,} out tokens"
    if call.estimated:
        tokens_text += " (input estimated: no answer came)"
    header = Text.assemble(
        "\n",
        (literal(f"Call {number}: {what_for(call)}"), "bold cyan"),
        literal(f" · try {call.attempt} · {call.worker or '-'} · {call.model}"),
        *((literal(f" (answered by {call.answered_by})"),) if _answered_by_another(call) else ()),
        " · ",
        (call.status.value, CALL_STYLE.get(call.status.value, "")),
        f" · {offset(call.started_at - start)}",
    )
    figures = Text(
        f"{tokens_text} · {call_cost(call)} · {_took(call)}",
        style="dim",
    )
    parts: list[RenderableType] = [header, figures]
    if call.failed:
        parts.append(Text(literal(error_of(call)), style=CALL_STYLE.get(call.status.value, "")))
    if call.prompt is not None:
        if system := call.prompt.get("system"):
            parts += [_section("System", "bold dim"), Text(literal(system))]
        for message in call.prompt.get("messages", []):
            role = str(message.get("role", "message")).capitalize()
            parts += [_section(role, "bold dim"), Text(literal(_text(message.get("content"))))]
    if call.output is not None:
        parts += [_section("Output", "bold dim"), Text(literal(call.output))]
    return parts


def _took(call: CallRecord) -> str:
    if call.timed:
        return seconds(call.latency)
    return "in flight" if not call.status.settled else "time unknown"


def _answered_by_another(call: CallRecord) -> bool:
    """A dated id (``claude-x-20250929`` for ``anthropic:claude-x``) is worth showing."""
    return call.answered_by not in (None, call.model, call.model.partition(":")[2])


def _text(content: object) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
