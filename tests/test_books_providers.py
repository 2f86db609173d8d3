"""The books equal what the provider charged, for every call that got an answer.

Real orchestrations run against two fake providers (Anthropic and OpenAI HTTP APIs, through
the official SDKs and foreman's real adapters) that bill every answer they give: distinct
token counts per answer, cache tokens included. Each ledger row must carry exactly what the
server answered for its request; refused calls cost nothing; the run's tokens and cost must
equal the sum of its ledger rows and the servers' bill, priced at each call's own model by
genai-prices, on both stores. Every model has a different price, so a call priced at the
wrong model shows.
"""

from __future__ import annotations

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
    models_closed,
    orchestrator,
    plan_answer,
    same_books,
    serve,
)
from fake_provider import HANG, Meter, Reply, WireScript, openai_completion
from foreman.ledger.records import CallStatus
from foreman.results import RunStatus
from foreman.store.base import Store
from foreman.workers import Registry
from helpers import plan_of, task, worker

pytestmark = pytest.mark.usefixtures("provider_env")


# --- the scenarios -----------------------------------------------------------------------


async def test_a_run_on_two_providers_costs_what_the_providers_billed(
    fakes: Fakes, store: Store
) -> None:
    """Planner on A, workers on B with a fallback on A, a validator on A, synthesis on B:
    a 429 then success, a 500 until the fallback model, a planner that answers badly once,
    a review that rejects once."""
    serve(
        fakes,
        WireScript(
            plan=[
                429,
                {"tasks": [{"id": "x", "worker": "ghost", "instructions": "?"}]},
                plan_answer(PLAN),
            ],
            tasks={
                "do t1": [429, "found t1"],
                "do t2": [500, 500, 500, "found t2"],
                "do t3": ["draft t3", "final t3"],
            },
            reviews={
                "do t3": [
                    {"approved": False, "reasons": ["too short"]},
                    {"approved": True, "reasons": []},
                ]
            },
            synthesis=[429, "FINAL"],
        ),
    )
    async with models_closed(orchestrator(fakes, store, validator="critic")) as orch:
        result = await orch.run("write a report")

    assert result.status is RunStatus.succeeded and result.answer == "FINAL"
    assert result.tasks["t2"].model == "claude-haiku-4-5"
    assert result.tasks["t3"].output == "final t3" and result.tasks["t3"].revisions == 1
    rows = await audit(store, result.run_id, fakes)
    same_books(result, rows)
    # Every provider answered with each model's own price: the planner's and the judge's
    # calls are on the books at theirs, not at the default model's.
    by_model = {row.model for row in rows if row.usage.total_tokens}
    assert by_model == {PLANNER, DEFAULT, RESEARCH, RESEARCH_BACKUP, WRITER, JUDGE}
    errors = sorted(row.error_type for row in rows if row.status is CallStatus.error)
    # The planner's first plan was refused after the fact (an error, its tokens kept).
    assert errors == ["PlanRejected"] + ["ProviderServerError"] * 3 + ["RateLimitError"] * 3


async def test_planning_on_another_provider_is_priced_at_the_planner_model(
    fakes: Fakes, store: Store
) -> None:
    serve(fakes, WireScript(plan=[plan_answer(plan_of(task("t1")))]))
    async with models_closed(orchestrator(fakes, store, assembly="concat")) as orch:
        result = await orch.run("one task")

    rows = await audit(store, result.run_id, fakes)
    same_books(result, rows)
    [planning] = [row for row in rows if row.parent == "plan"]
    assert planning.model == PLANNER and planning.cost_usd
    anthropic, openai = fakes
    assert result.cost_usd == pytest.approx(
        float(anthropic.bill[0].price() + openai.bill[0].price()), rel=1e-9
    )


async def test_a_validator_on_another_provider_is_priced_at_its_own_model(
    fakes: Fakes, store: Store
) -> None:
    serve(
        fakes,
        WireScript(
            plan=[plan_answer(plan_of(task("t1", "writer")))],
            reviews={"do t1": [{"approved": False, "reasons": ["again"]}, {"approved": True}]},
        ),
    )
    async with models_closed(orchestrator(fakes, store, validator="critic")) as orch:
        result = await orch.run("one reviewed task")

    rows = await audit(store, result.run_id, fakes)
    same_books(result, rows)
    reviews = [row for row in rows if row.purpose == "review"]
    assert [row.model for row in reviews] == [JUDGE, JUDGE]
    assert [row.attempt for row in rows if row.parent == "task:t1"] == [1, 2, 3, 4]


async def test_an_answer_without_the_forced_tool_call_is_on_the_books(
    fakes: Fakes, store: Store
) -> None:
    """Anthropic billed the answer even though it is unusable (no ``respond`` call)."""
    serve(
        fakes,
        WireScript(plan=["I would rather chat about it.", plan_answer(plan_of(task("t1")))]),
    )
    async with models_closed(orchestrator(fakes, store, assembly="concat")) as orch:
        result = await orch.run("one task")

    rows = await audit(store, result.run_id, fakes)
    same_books(result, rows)
    first = rows[0]
    assert (first.status, first.error_type) == (CallStatus.error, "OutputValidationError")
    assert first.usage.output_tokens > 0


async def test_an_answer_with_no_choices_is_on_the_books(fakes: Fakes, store: Store) -> None:
    """OpenAI billed an answer the adapter cannot use (no choices): its tokens count."""
    meter = Meter()
    empty = openai_completion("", model="gpt-5.4", usage=meter.openai())  # 51 output tokens
    empty["choices"] = []
    plan = [plan_answer(plan_of(task("t1"), task("t2")))]
    serve(fakes, WireScript(plan=plan, synthesis=[Reply(body=empty), "FINAL"], meter=meter))
    async with models_closed(orchestrator(fakes, store)) as orch:
        result = await orch.run("two tasks")

    assert result.answer == "FINAL"
    rows = await audit(store, result.run_id, fakes)
    same_books(result, rows)
    first, second = [row for row in rows if row.parent == "synthesis"]
    assert (first.status, first.usage.output_tokens) == (CallStatus.error, 51)
    assert second.status is CallStatus.ok


async def test_a_call_that_times_out_keeps_its_estimate(fakes: Fakes, store: Store) -> None:
    """No answer within the worker's timeout: ``timeout``, input estimated (the provider
    may have done the work), retried; the retry's answer is billed as usual."""
    team = Registry([worker("researcher", model=RESEARCH, timeout=2.0)])
    serve(
        fakes,
        WireScript(plan=[plan_answer(plan_of(task("t1")))], tasks={"do t1": [HANG, "found t1"]}),
    )
    async with models_closed(orchestrator(fakes, store, team=team)) as orch:
        result = await orch.run("one slow task")

    assert result.tasks["t1"].output == "found t1"
    rows = await audit(store, result.run_id, fakes, estimated=1)
    same_books(result, rows)
    slow, answered = [row for row in rows if row.parent == "task:t1"]
    assert (slow.status, slow.error_type, slow.estimated) == (
        CallStatus.timeout,
        "ModelTimeoutError",
        True,
    )
    assert answered.status is CallStatus.ok and slow.cost_usd
