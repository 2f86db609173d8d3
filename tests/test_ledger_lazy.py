"""The ledger builds a call's ``started`` record only when it is looked at, and keeps its
books as calls open and settle: what it reports must not depend on when anyone looked."""

from __future__ import annotations

import json

import pytest

from foreman.ledger.recorder import CallLedger, estimate_input_tokens
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.models.base import Message, ModelRequest, ModelResponse, Usage


def request(text: str) -> ModelRequest:
    return ModelRequest(system="sys", messages=[Message(role="user", content=text)])


def ledger() -> CallLedger:
    ids = iter(f"c{i}" for i in range(1, 100))
    ticks = iter(range(1000))
    return CallLedger(
        "run", new_id=lambda: next(ids), clock=lambda: 100.0, timer=lambda: next(ticks)
    )


def summed(records) -> Usage:
    total = Usage()
    for record in records:
        total += record.usage
    return total


def test_a_call_settled_before_any_look_is_written_once_settled() -> None:
    books = ledger()
    scope = books.scope(CallPurpose.task, task_id="t1", worker="w")
    call = scope.open("openai:gpt-4o", request("x" * 40))
    answer = ModelResponse(text="ok", model="gpt-4o", usage=Usage(input_tokens=7, output_tokens=2))
    call.close("ok", response=answer)
    [record] = books.take()
    assert record.status is CallStatus.ok and record.usage == answer.usage
    assert record.prompt == {"system": "sys", "messages": [{"role": "user", "content": "x" * 40}]}
    assert record.cost_usd is not None and record.cost_usd > 0
    assert books.take() == []


def test_started_records_are_built_when_looked_at_in_start_order() -> None:
    books = ledger()
    first = books.scope(CallPurpose.task, task_id="t1").open("m", request("a" * 8))
    second = books.scope(CallPurpose.task, task_id="t2").open("m", request("b" * 16))
    second.close("error", error=RuntimeError("refused"))
    # Looked at now: the first is still in flight, the second settled (and is not billed).
    assert [(r.call_id, r.status) for r in books.records.values()] == [
        ("c1", CallStatus.started),
        ("c2", CallStatus.error),
    ]
    started = books.records["c1"]
    assert started.estimated and started.usage == Usage(input_tokens=3)  # 11 chars / 4
    assert [r.call_id for r in books.take()] == ["c1", "c2"]
    first.close("ok", response=ModelResponse(text="x", model="m", usage=Usage(output_tokens=1)))
    [settled] = books.take()
    assert settled.call_id == "c1" and settled.status is CallStatus.ok
    assert settled.started_at == started.started_at and settled.attempt == started.attempt


def test_usage_is_the_sum_of_the_records_at_every_step() -> None:
    books = ledger()
    scope = books.scope(CallPurpose.task, task_id="t1")
    calls = [scope.open("m", request("z" * (8 * n))) for n in range(1, 6)]
    assert books.usage == summed(books.records.values())
    for n, call in enumerate(calls[:3], 1):
        call.close("ok", response=ModelResponse(text="a", model="m", usage=Usage(input_tokens=n)))
        assert books.usage == summed(books.records.values())
    calls[3].close("error", error="refused")  # refused: billed nothing
    books.interrupt_open()  # the last one keeps its estimate
    assert books.usage == summed(books.records.values()) == books.usage_of("task:t1")
    assert books.usage.input_tokens == 1 + 2 + 3 + 11  # 43 characters sent, / 4
    assert books.calls == 5


def test_the_input_estimate_counts_the_schema_as_its_json_every_time() -> None:
    """A schema's length is remembered per item: requests that share a worker's schema,
    and one whose schema differs, still count exactly what ``json.dumps`` gives."""
    properties = {"summary": {"type": "string"}, "note": "é"}
    for schema in (
        {},
        {"type": "object", "properties": properties},
        {"type": "object", "properties": properties, "required": ["summary"]},
        {"type": "array", "properties": properties},
    ):
        request = ModelRequest(messages=[Message(role="user", content="x")], output_schema=schema)
        for _ in range(2):
            assert estimate_input_tokens(request) == -(-(1 + len(json.dumps(schema))) // 4)


def test_a_limited_take_leaves_the_later_started_calls_for_the_next_write() -> None:
    books = ledger()
    calls = [
        books.scope(CallPurpose.task, task_id=f"t{i}").open("m", request("q")) for i in range(5)
    ]
    calls[3].close("ok", response=ModelResponse(text="x", model="m", usage=Usage(output_tokens=1)))
    # Every settled call, and the two oldest started ones.
    assert [(r.call_id, r.status) for r in books.take(started=2)] == [
        ("c1", CallStatus.started),
        ("c2", CallStatus.started),
        ("c4", CallStatus.ok),
    ]
    assert books.has_unwritten
    calls[4].close("error", error=RuntimeError("refused"))  # settled before its row went
    assert [(r.call_id, r.status) for r in books.take(started=2)] == [
        ("c3", CallStatus.started),
        ("c5", CallStatus.error),
    ]
    assert not books.has_unwritten and books.take() == []
    assert [r.status for r in books.records.values()] == [CallStatus.started] * 3 + [
        CallStatus.ok,
        CallStatus.error,
    ]


def test_calls_are_priced_at_the_prices_the_execution_started_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", json.dumps({"my-model": [1.0, 2.0]}))
    books = ledger()
    monkeypatch.setenv("FOREMAN_PRICES", json.dumps({"my-model": [100.0, 200.0]}))
    call = books.scope(CallPurpose.task, task_id="t1").open("my-model", request("q"))
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    call.close("ok", response=ModelResponse(text="x", model="my-model", usage=usage))
    [record] = books.take()
    assert record.cost_usd == pytest.approx(3.0)  # 1.0 + 2.0: not the later 300.0
    monkeypatch.delenv("FOREMAN_PRICES")
    assert ledger().prices is None


def test_a_call_whose_closing_failed_is_still_written_started() -> None:
    """A close that raised half-way (a malformed price list, say) leaves the call on the
    books as started, as the unlimited take does: the limited take must not lose it."""
    books = ledger()
    call = books.scope(CallPurpose.task, task_id="t1").open("m", request("q"))
    books.prices = "{not json"
    with pytest.raises(Exception, match="FOREMAN_PRICES"):
        call.close("ok", response=ModelResponse(text="x", model="m", usage=Usage()))
    [record] = books.take(started=5)
    assert record.call_id == "c1" and record.status is CallStatus.started
    assert books.take(started=5) == []


def test_totals_read_mid_flight_count_open_calls_at_their_estimate_made_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call's input estimate is made only when the totals are read while it is in
    flight (or its started row is built): a call answered before anyone looks never costs
    an estimate, and the totals read at any moment are the same either way."""
    made: list[int] = []

    def counted(request: ModelRequest) -> int:
        made.append(1)
        return estimate_input_tokens(request)

    monkeypatch.setattr("foreman.ledger.recorder.estimate_input_tokens", counted)
    books = ledger()
    scope = books.scope(CallPurpose.task, task_id="t1")
    answered = scope.open("m", request("a" * 40))
    answered.close("ok", response=ModelResponse(text="x", model="m", usage=Usage(input_tokens=9)))
    assert made == [] and books.usage == books.usage_of("task:t1") == Usage(input_tokens=9)
    open_call = scope.open("m", request("b" * 40))  # 43 characters sent: 11 tokens
    other = books.scope(CallPurpose.task, task_id="t2").open("m", request("c" * 8))
    assert books.usage_of("task:t1") == Usage(input_tokens=9 + 11)
    assert books.usage.input_tokens == 9 + 11 + 3
    assert len(made) == 2  # once per open call, however often the totals are read
    open_call.close("ok", response=ModelResponse(text="y", model="m", usage=Usage(input_tokens=5)))
    other.close("error", error="refused")  # refused: billed nothing
    assert books.usage == books.usage_of("task:t1") == Usage(input_tokens=14)
    assert books.usage == summed(books.records.values())


async def test_a_call_cut_short_by_a_crash_keeps_the_price_its_run_ran_at(
    tmp_path, monkeypatch
) -> None:
    from foreman.store import SQLiteStore
    from foreman.store.base import LeaseOwner, RunRecord

    monkeypatch.setenv("FOREMAN_PRICES", json.dumps({"acme:m": [1, 2]}))
    books = CallLedger("run")
    books.scope(CallPurpose.task, task_id="t1").open("acme:m", request("x" * 4000))
    [started] = books.take()
    assert started.status is CallStatus.started and started.usage.input_tokens > 1000
    assert started.cost_usd == pytest.approx(started.usage.input_tokens * 1e-6)

    store = SQLiteStore(tmp_path / "runs.db")
    try:
        await store.create_run(RunRecord(run_id="run", request="r", status="running"))
        owner = LeaseOwner()
        await store.acquire_lease("run", owner, 30)
        await store.save_calls("run", [started])  # ...and the process dies here
        await store.release_lease("run", owner)  # (its lease lapses: the run reads crashed)
        monkeypatch.setenv("FOREMAN_PRICES", json.dumps({"acme:m": [1000, 2000]}))
        assert (await store.get_run("run")).cost_usd == pytest.approx(started.cost_usd)
        [cut] = await store.list_calls(run_id="run")  # read as interrupted: the run died
        assert cut.status is CallStatus.interrupted
        assert cut.cost_usd == pytest.approx(started.cost_usd)  # the rows add up to the run
        monkeypatch.delenv("FOREMAN_PRICES")
        assert (await store.get_run("run")).cost_usd == pytest.approx(started.cost_usd)
    finally:
        await store.aclose()
