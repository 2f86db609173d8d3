"""Asking the books: ``foreman.ledger.stats`` and ``foreman stats`` over real runs' ledgers
and over records with known latencies, times and statuses."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from books_run import PRICE, PRICES, books_run
from foreman.cli import app
from foreman.ledger import CallRecord, CallStats, call_stats, group_calls
from foreman.ledger.stats import percentile, retried_call_ids
from foreman.models.base import Usage
from foreman.store.base import RunRecord
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore

runner = CliRunner()

#: The names ``stats --json`` promises (the issue's, then this module's): a contract.
FIGURES = [
    "calls",
    "failed_calls",
    "retried_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "unpriced",
    "latency_p50_s",
    "latency_p95_s",
    "failure_rate",
    "retry_rate",
    "estimated_calls",
]

MIDNIGHT = datetime(2026, 12, 2, tzinfo=UTC).timestamp()


def call(number: int, **fields) -> CallRecord:
    """A settled ok task call of run r1 at ``MIDNIGHT + number`` seconds."""
    fields.setdefault("run_id", "r1")
    fields.setdefault("purpose", "task")
    fields.setdefault("task_id", "t1" if fields["purpose"] in ("task", "review") else None)
    fields.setdefault("parent", f"task:{fields['task_id']}" if fields["task_id"] else "plan")
    fields.setdefault("worker", "w" if fields["task_id"] else None)
    fields.setdefault("model", "m")
    fields.setdefault("status", "ok")
    fields.setdefault("started_at", MIDNIGHT + number)
    return CallRecord(call_id=f"c{number}", provider="unknown", **fields)


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", PRICES)


def dollars(model: str, usage: Usage) -> float:
    per_in, per_out = PRICE[model]
    return (usage.input_tokens * per_in + usage.output_tokens * per_out) / 1_000_000


def answered(model) -> Usage:
    return sum((response.usage for _, response in model.responses), Usage())


# --- pure functions ------------------------------------------------------------------------


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(n) for n in range(1, 21)], 95) == pytest.approx(19.05)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_latency_percentiles_of_a_group_ignore_calls_still_in_flight() -> None:
    records = [call(n, latency=float(n)) for n in range(1, 21)]
    records.append(call(30, status="started", latency=0.0))
    (stats,) = group_calls(records)
    assert (stats.latency_p50_s, stats.latency_p95_s) == (10.5, pytest.approx(19.05))
    assert stats.calls == 21 and stats.failed_calls == 0


def test_calls_without_a_worker_are_labelled_by_purpose() -> None:
    records = [
        call(1, purpose="plan"),
        call(2, worker="w"),
        call(3, purpose="review", worker="judge"),
        call(4, purpose="synthesis", parent="synthesis"),
    ]
    assert [s.worker for s in group_calls(records, "worker")] == [
        "(plan)",
        "(synthesis)",
        "judge",
        "w",
    ]


def test_a_retry_follows_a_failed_call_of_the_same_series_not_a_review_or_revision() -> None:
    records = [
        call(1, purpose="plan", status="error"),
        call(2, purpose="plan"),  # asked again after the error
        call(3, status="timeout"),
        call(4, model="fallback"),  # the fallback model after the timeout
        call(5, purpose="review", worker="judge"),  # after an ok call: a review
        call(6),  # a revision the reviewer asked for
        call(7, purpose="review", worker="judge", status="error"),
        call(8, purpose="review", worker="judge"),  # the review retried
        call(9, purpose="synthesis", parent="synthesis"),
        call(10, purpose="synthesis", parent="synthesis"),  # a second synthesis: a retry
        call(11, run_id="r2", status="error"),  # another run's series
        call(12, run_id="r1", task_id="t2"),  # another task's series
    ]
    assert retried_call_ids(records) == {"c2", "c4", "c8", "c10"}
    by_model = {s.model: s for s in group_calls(records, "model")}
    assert (by_model["fallback"].retried_calls, by_model["fallback"].retry_rate) == (1, 1.0)
    assert (by_model["m"].failed_calls, by_model["m"].calls) == (4, 11)
    assert by_model["m"].failure_rate == pytest.approx(4 / 11)


def test_days_are_utc_dates_in_time_order() -> None:
    records = [call(0), call(-1), call(86400 * 3)]  # 00:00:00, 23:59:59 the day before...
    days = group_calls(records, "day")
    assert [(s.day, s.calls) for s in days] == [
        ("2026-12-01", 1),
        ("2026-12-02", 1),
        ("2026-12-05", 1),
    ]


def test_a_call_just_before_midnight_is_in_the_day_it_started() -> None:
    """A call 0.4 us before midnight was grouped in the next day (rounded to whole
    microseconds), though `--until` that midnight selects it."""
    late = call(0, started_at=MIDNIGHT - 4e-7)
    assert [s.day for s in group_calls([late], "day")] == ["2026-12-01"]


def test_runs_are_in_the_order_of_their_first_call() -> None:
    records = [call(5, run_id="zz"), call(1, run_id="zz"), call(3, run_id="aa")]
    assert [s.run_id for s in group_calls(records, "run")] == ["zz", "aa"]


def test_a_cost_is_unknown_when_a_model_without_a_price_spent_tokens(priced) -> None:
    spent = Usage(input_tokens=1000, output_tokens=100)
    records = [
        call(1, model="boss", usage=spent, cost_usd=dollars("boss", spent)),
        call(2, model="mystery", usage=spent),
        call(3, model="silent", status="error"),  # refused: no tokens, no price needed
    ]
    by_model = {s.model: s for s in group_calls(records, "model")}
    assert by_model["boss"].cost_usd == pytest.approx(0.0012)
    assert (by_model["mystery"].cost_usd, by_model["mystery"].unpriced) == (None, ["mystery"])
    assert (by_model["silent"].cost_usd, by_model["silent"].unpriced) == (0.0, [])
    (everything,) = group_calls(records, "run")
    assert (everything.cost_usd, everything.unpriced) == (None, ["mystery"])


def test_estimated_and_cache_tokens_are_counted() -> None:
    records = [
        call(1, usage=Usage(input_tokens=5, cache_read_tokens=40, cache_write_tokens=9)),
        call(2, status="interrupted", estimated=True, usage=Usage(input_tokens=70)),
    ]
    (stats,) = group_calls(records)
    assert (stats.input_tokens, stats.cache_read_tokens, stats.cache_write_tokens) == (75, 40, 9)
    assert (stats.estimated_calls, stats.failed_calls) == (1, 1)


def test_the_json_of_a_group_has_its_own_key_and_the_promised_names() -> None:
    for by, key in (("worker", "worker"), ("model", "model"), ("run", "run_id"), ("day", "day")):
        (stats,) = group_calls([call(1)], by)
        assert list(stats.as_json()) == [key, *FIGURES]
        assert stats.key == stats.as_json()[key]


# --- call_stats over stores ----------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path: Path):
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield made
    await made.aclose()


async def test_call_stats_reads_the_store_within_since_until_and_one_run(store) -> None:
    for run_id in ("r1", "r2"):
        await store.create_run(RunRecord(run_id=run_id, request="x", status="succeeded"))
    records = [
        call(-10, run_id="r1", latency=1.0),
        call(0, run_id="r1", latency=2.0),
        call(10, run_id="r2", latency=3.0),
        call(20, run_id="r2", latency=4.0, status="error"),
    ]
    for run_id in ("r1", "r2"):
        await store.save_calls(run_id, [r for r in records if r.run_id == run_id])

    days = await call_stats(store, by="day")
    assert [(s.day, s.calls) for s in days] == [("2026-12-01", 1), ("2026-12-02", 3)]
    # [since, until): the call at exactly MIDNIGHT + 20 is left out; a naive datetime is UTC
    window = await call_stats(store, by="run", since=datetime(2026, 12, 2), until=MIDNIGHT + 20)
    assert [(s.run_id, s.calls) for s in window] == [("r1", 1), ("r2", 1)]
    (r2,) = await call_stats(store, by="worker", run_id="r2")
    assert (r2.calls, r2.failed_calls, r2.latency_p50_s) == (2, 1, 3.5)
    assert await call_stats(store, run_id="nosuch") == []


# --- a real run ----------------------------------------------------------------------------


async def test_stats_of_a_real_run_add_up_to_its_books_whichever_way_grouped(
    priced, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        result, models = await books_run(store)
        record = await store.get_run(result.run_id)
        for by in ("worker", "model", "run", "day"):
            groups = await call_stats(store, by=by)
            assert sum(s.calls for s in groups) == record.calls == 12
            total = Usage(
                input_tokens=sum(s.input_tokens for s in groups),
                output_tokens=sum(s.output_tokens for s in groups),
            )
            assert total == record.usage == result.usage
            assert sum(s.cost_usd for s in groups) == pytest.approx(record.cost_usd)
            assert sum(s.failed_calls for s in groups) == 4  # 3 errors, 1 plan rejected
            assert sum(s.retried_calls for s in groups) == 4
        workers = {s.worker: s for s in await call_stats(store, by="worker")}
    finally:
        await store.aclose()

    figures = {k: (s.calls, s.failed_calls, s.retried_calls) for k, s in workers.items()}
    assert figures == {
        "(plan)": (2, 1, 1),  # the first answer was not a plan (failed): asked again
        "(synthesis)": (1, 0, 0),
        "judge": (3, 0, 0),  # two reviews of t2 (a rejection), one of t1
        "researcher": (4, 3, 3),  # three failures on primary, then backup answered
        "writer": (2, 0, 0),  # the revision is not a retry
    }
    judge = workers["judge"]
    assert Usage(input_tokens=judge.input_tokens, output_tokens=judge.output_tokens) == answered(
        models.judge
    )
    assert judge.cost_usd == pytest.approx(dollars("judge", answered(models.judge)))
    researcher = workers["researcher"]
    assert researcher.cost_usd == pytest.approx(dollars("backup", answered(models.backup)))
    assert researcher.failure_rate == 0.75


def stats_json(*args: str) -> list[dict]:
    result = runner.invoke(app, ["stats", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def recorded(runs: int = 1, **stats_of: dict) -> tuple[list, dict]:
    """``runs`` scenario runs into the CLI's store (outside any event loop, as the CLI
    runs its own); and ``call_stats(store, **options)`` for each named set of options."""

    async def record() -> tuple[list, dict]:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            results = [(await books_run(store))[0] for _ in range(runs)]
            options = {name: dict(kw) for name, kw in stats_of.items()}
            for kw in options.values():
                if kw.get("run_id") == "last":
                    kw["run_id"] = results[-1].run_id
            return results, {name: await call_stats(store, **kw) for name, kw in options.items()}
        finally:
            await store.aclose()

    return asyncio.run(record())


def test_the_cli_prints_the_same_stats_as_python(priced) -> None:
    (first, second), expected = recorded(
        2,
        worker={"by": "worker"},
        model={"by": "model"},
        day={"by": "day"},
        last={"by": "model", "run_id": "last"},
    )
    for by in ("worker", "model", "day"):
        assert stats_json("--by", by) == [s.as_json() for s in expected[by]]
    assert stats_json("--by", "model", "--run", "last") == [s.as_json() for s in expected["last"]]
    assert expected["last"] != expected["model"]  # the filter left the first run out
    assert stats_json("--by", "model", "--run", second.run_id[:-1]) == stats_json(
        "--by", "model", "--run", "last"
    )
    runs = stats_json("--by", "run")
    assert [row["run_id"] for row in runs] == [first.run_id, second.run_id]
    assert all(list(row) == ["run_id", *FIGURES] for row in runs)
    assert stats_json("--since", "1h") == stats_json()
    assert stats_json("--until", "2000-01-01") == []


def test_the_table_names_the_most_expensive_and_slowest_worker(priced) -> None:
    recorded()
    result = runner.invoke(app, ["stats"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    researcher = next(line for line in lines if line.startswith("researcher"))
    assert researcher.split()[:6] == ["researcher", "4", "3", "(75%)", "3", "(75%)"]
    # the judge reviewed three times at the dearest price: it spent the most
    assert any(line.startswith("most expensive: judge, $") for line in lines)
    assert any(line.startswith("slowest: ") for line in lines)
    assert "failures: 4 of 12 calls (33%); retries: 4 (33%)" in lines


def test_without_prices_the_table_ranks_by_tokens_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FOREMAN_PRICES", raising=False)
    recorded()
    result = runner.invoke(app, ["stats", "--by", "model"])
    assert result.exit_code == 0, result.output
    assert "most tokens: (plan), " in result.output
    assert "cost unknown: no price for boss, backup, judge" in result.output
    assert stats_json()[0]["cost_usd"] is None


def test_free_calls_are_ranked_by_tokens() -> None:
    from foreman.cli.stats import stats_footer

    records = [
        call(1, model="local", worker="a", usage=Usage(input_tokens=10), cost_usd=0.0),
        call(2, model="local", worker="b", usage=Usage(input_tokens=30), cost_usd=0.0),
    ]
    lines = [line.plain for line in stats_footer(records)]
    assert "most tokens: b, 30 (no cost)" in lines


def test_an_empty_store_is_one_friendly_line() -> None:
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 0
    assert result.output.startswith("No model calls recorded yet")
    assert stats_json() == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "yesterday"], "'yesterday' is not a date (2026-12-01)"),
        (["--until", "7x"], "'7x' is not a date"),
        (["--since", "2d", "--until", "3d"], "it must be earlier than --until"),
        (["--by", "team"], "'team' is not one of"),
    ],
)
def test_bad_options_are_one_clear_line_and_exit_2(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["stats", *args])
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert says in error


def test_an_unknown_run_is_a_clear_error() -> None:
    recorded()
    result = runner.invoke(app, ["stats", "--run", "nosuch"])
    assert result.exit_code == 1
    assert "No run 'nosuch'" in result.output and "Traceback" not in result.output


def test_iso_datetimes_with_an_offset_are_respected() -> None:
    from foreman.cli.stats import parse_moment

    at = parse_moment("2026-12-02T01:00+01:00", "--since", now=0)
    assert at == MIDNIGHT
    assert parse_moment("2026-12-02", "--since", now=0) == MIDNIGHT
    assert parse_moment("36h", "--since", now=MIDNIGHT) == MIDNIGHT - 36 * 3600


def test_call_stats_is_exported_with_its_model() -> None:
    import foreman.ledger as ledger

    assert {"CallStats", "call_stats", "group_calls"} <= set(ledger.__all__)
    assert CallStats.model_fields.keys() >= set(FIGURES)
