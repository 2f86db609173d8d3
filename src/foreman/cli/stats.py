"""``foreman stats``: the ledger's totals by worker, model, run or day, and who spends most."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from foreman.cli.calls import money, seconds, short_model, tokens
from foreman.cli.common import DbOpt, app, guard, out, usage_error, with_store
from foreman.cli.text import safe_text
from foreman.ledger.records import CallRecord
from foreman.ledger.stats import CallStats, GroupBy, group_calls, summarise
from foreman.store.base import Store

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MOMENT_HELP = (
    "a date (2026-12-01), a date and time (2026-12-01T14:30, UTC unless it gives an offset) "
    "or an age (30m, 24h, 7d, 2w)"
)


def parse_moment(text: str, option: str, *, now: float) -> float:
    """``--since``/``--until`` as seconds since the epoch; anything else exits 2."""
    text = text.strip()
    if age := _AGE.fullmatch(text.lower()):
        return now - float(age[1]) * _UNIT[age[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        usage_error(f"{text!r} is not {_MOMENT_HELP}.", option)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@app.command()
def stats(
    by: Annotated[
        GroupBy, typer.Option("--by", help="Group the calls by worker, model, run or day (UTC).")
    ] = GroupBy.worker,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN", help=f"Only calls that started at or after this: {_MOMENT_HELP}."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="Only calls that started before this (same forms)."),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="RUN",
            help="Only this run (with its nested runs, as its books): its id, a unique prefix "
            "of it, or 'last'.",
        ),
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, one object per group.")
    ] = False,
) -> None:
    """Tokens, cost, failures, retries and latency of the model calls in the run store,
    grouped; below the table, the most expensive and the slowest worker."""
    now = time.time()
    start = parse_moment(since, "--since", now=now) if since else None
    end = parse_moment(until, "--until", now=now) if until else None
    if start is not None and end is not None and start >= end:
        usage_error("it must be earlier than --until.", "--since")
    if run is not None and not run.strip():  # `--run "$RUN"` with RUN unset: not every run
        usage_error("it needs a run id, a unique prefix of one, or 'last'.", "--run")

    async def load(store: Store) -> list[CallRecord]:
        run_id = await store.resolve_run(run) if run else None  # one store opened, not two
        return await store.list_calls(
            run_id=run_id, since=start, until=end, descendants=run_id is not None
        )

    records = guard(lambda: asyncio.run(with_store(db, load)))
    guard(lambda: _print(records, by, json_out=json_out, filtered=bool(run or since or until)))


def _print(records: list[CallRecord], by: GroupBy, *, json_out: bool, filtered: bool) -> None:
    """The stats of ``records``; pricing them may fail (a bad ``FOREMAN_PRICES``)."""
    groups = group_calls(records, by)
    if json_out:
        print(json.dumps([group.as_json() for group in groups], indent=2))
    elif not records:
        out.print(
            "No model calls in that range."
            if filtered
            else 'No model calls recorded yet: `foreman run "<request>"` records every call.'
        )
    else:
        out.print(stats_table(groups, by))
        workers = groups if by is GroupBy.worker else None  # already grouped: not again
        for line in stats_footer(records, workers):
            out.print(line, soft_wrap=True)


def stats_table(groups: list[CallStats], by: GroupBy) -> Table:
    """Fits 80 columns: only the key column wraps (a long model name folds)."""
    # One space between columns (not two, as elsewhere): room for a model's whole name.
    table = Table(title=f"Calls by {by.value}", box=None, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column(by.value, overflow="fold")
    for column in ("calls", "failed", "retried", "tok in", "tok out", "cost", "p50", "p95"):
        table.add_column(column, justify="right", no_wrap=True)
    for group in groups:
        table.add_row(
            safe_text(short_model(group.key) if by is GroupBy.model else group.key),
            Text(str(group.calls)),
            Text(_rate(group.failed_calls, group.failure_rate), style=_red(group.failed_calls)),
            Text(_rate(group.retried_calls, group.retry_rate)),
            Text(tokens(group.input_tokens)),
            Text(tokens(group.output_tokens)),
            Text(money(group.cost_usd)),
            Text(seconds(group.latency_p50_s)),
            Text(seconds(group.latency_p95_s)),
        )
    return table


def stats_footer(records: list[CallRecord], workers: list[CallStats] | None = None) -> list[Text]:
    """The most expensive and the slowest worker, the overall failure and retry rates, and
    what makes a figure uncertain (unpriced models, estimated tokens). ``workers``: the
    records grouped by worker, when the caller has them already."""
    if workers is None:
        workers = group_calls(records, GroupBy.worker)
    total = summarise(records)
    lines = [Text()]
    if total.cost_usd:  # every price known, and something was spent
        top = max(workers, key=lambda group: group.cost_usd or 0.0)
        share = f"{(top.cost_usd or 0.0) / total.cost_usd:.0%} of {money(total.cost_usd)}"
        lines.append(safe_text(f"most expensive: {top.key}, {money(top.cost_usd)} ({share})"))
    else:  # no price to rank by (unknown, or local models that cost nothing): tokens
        top = max(workers, key=lambda group: group.input_tokens + group.output_tokens)
        spent = top.input_tokens + top.output_tokens
        why = "cost unknown" if total.cost_usd is None else "no cost"
        lines.append(safe_text(f"most tokens: {top.key}, {spent:,} ({why})"))
    timed = [group for group in workers if group.latency_p50_s is not None]
    if timed:
        slow = max(timed, key=lambda group: (group.latency_p50_s, group.latency_p95_s))
        lines.append(
            safe_text(
                f"slowest: {slow.key}, p50 {seconds(slow.latency_p50_s)}, "
                f"p95 {seconds(slow.latency_p95_s)}"
            )
        )
    lines.append(
        Text(
            f"failures: {total.failed_calls} of {total.calls} calls ({total.failure_rate:.0%}); "
            f"retries: {total.retried_calls} ({total.retry_rate:.0%})"
        )
    )
    if total.estimated_calls:
        lines.append(
            Text(
                f"{total.estimated_calls} call(s) got no answer: their input tokens are estimates.",
                style="dim",
            )
        )
    if total.unpriced:
        lines.append(
            safe_text(
                f"cost unknown: no price for {', '.join(total.unpriced)}. Set FOREMAN_PRICES "
                "(e.g. '{\"model-id\": [input, output]}', dollars per million tokens).",
                style="dim",
            )
        )
    return lines


def _rate(count: int, rate: float) -> str:
    return f"{count} ({rate:.0%})" if count else "0"


def _red(count: int) -> str:
    return "red" if count else ""
