"""Prices of one's own (``FOREMAN_PRICES``) are what the books charge, for every model.

Every model of the two-provider team gets its own made-up price, far from its list price,
so a call priced at another model, or at the list price instead of the override, shows.
Providers answer with dated snapshot ids (``gpt-5.4-mini-2026-03-17``), as they do: the
override the user wrote for the model they asked for still applies.
"""

from __future__ import annotations

import json
from decimal import Decimal

import genai_prices
import pytest

from books_audit import (
    DEFAULT,
    JUDGE,
    PLAN,
    PLANNER,
    RESEARCH,
    RESEARCH_BACKUP,
    WRITER,
    Fakes,
    audit,
    clean_env,
    models_closed,
    orchestrator,
    plan_answer,
    same_books,
    serve,
)
from fake_provider import Charge, WireScript
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.results import RunStatus
from foreman.store.base import RunRecord, Store

#: Dollars per million tokens: input, output, cache read, cache write; all different.
PRICES: dict[str, list[float]] = {
    PLANNER: [11, 13, 17, 19],
    DEFAULT: [23, 29, 31, 37],
    RESEARCH: [41, 43, 47, 53],
    RESEARCH_BACKUP: [59, 61, 67, 71],
    WRITER: [73, 79, 83, 89],
    JUDGE: [97, 101, 103, 107],
}
SNAPSHOTS = {
    "gpt-5.4-mini": "gpt-5.4-mini-2026-03-17",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-6": "claude-sonnet-4-6-20260101",
}


@pytest.fixture(autouse=True)
def _prices(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    # Half the keys as foreman names, half as bare provider ids: both are documented.
    table = {
        (name if i % 2 else name.split(":", 1)[1]): rates
        for i, (name, rates) in enumerate(PRICES.items())
    }
    monkeypatch.setenv("FOREMAN_PRICES", json.dumps(table))


def own_price(charge: Charge) -> Decimal:
    """The user's price for the model asked (the answer may name a dated snapshot)."""
    return charge.price(PRICES[f"{charge.provider}:{charge.request.body['model']}"])


async def test_every_call_is_charged_at_the_override_of_its_own_model(
    fakes: Fakes, store: Store
) -> None:
    serve(
        fakes,
        WireScript(
            plan=[plan_answer(PLAN)],
            tasks={"do t1": [429, "found t1"], "do t2": [500, 500, 500, "found t2"]},
            reviews={"do t3": [{"approved": False, "reasons": ["again"]}, {"approved": True}]},
            answered_as=SNAPSHOTS,
        ),
    )
    async with models_closed(orchestrator(fakes, store, validator="critic")) as orch:
        result = await orch.run("write a report")

    assert result.status is RunStatus.succeeded
    rows = await audit(store, result.run_id, fakes, price=own_price)
    same_books(result, rows)
    assert {row.answered_by for row in rows if row.model == RESEARCH_BACKUP} == {
        "claude-haiku-4-5-20251001"
    }
    billed = sum((own_price(c) for fake in fakes for c in fake.bill), Decimal())
    assert result.cost_usd == pytest.approx(float(billed), rel=1e-9)


async def test_calls_without_a_price_yet_are_priced_one_by_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls cut short by a crash (stored ``started``, no price yet) of a model with a
    long-context tier: each is priced alone, as the provider bills each request, so the
    run's cost is the sum of its rows' (pricing their sum would cross the tier)."""
    monkeypatch.delenv("FOREMAN_PRICES")  # genai-prices' tiers, not a flat price
    run_id = "r-tiers"
    await store.create_run(RunRecord(run_id=run_id, request="long"))
    await store.update_run(run_id, status=RunStatus.interrupted)
    big = Usage(input_tokens=150_000)
    cut = [
        CallRecord(
            run_id=run_id,
            call_id=f"c{i}",
            parent=f"task:t{i}",
            purpose="task",
            task_id=f"t{i}",
            provider="openai",
            model="openai:gpt-5.4",
            usage=big,
            estimated=True,
        )
        for i in (1, 2)
    ]
    await store.save_calls(run_id, cut)

    rows = await store.list_calls(run_id=run_id)
    one = genai_prices.calc_price(genai_prices.Usage(input_tokens=150_000), "gpt-5.4").total_price
    assert [row.cost_usd for row in rows] == [pytest.approx(float(one))] * 2
    assert (await store.get_run(run_id)).cost_usd == pytest.approx(2 * float(one), rel=1e-9)
    assert Books.of(rows).cost_usd == pytest.approx(2 * float(one), rel=1e-9)
