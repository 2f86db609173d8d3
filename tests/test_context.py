"""Context compaction: what the orchestrator reads fits its budget; workers get it all."""

from __future__ import annotations

import json

import pytest

from foreman import Orchestrator, RunStatus
from foreman.engine.context import COMPACTION_SYSTEM, compact, tokens_of
from foreman.errors import ConfigError, ModelError
from foreman.events import EVENT_ADAPTER, ContextCompacted
from foreman.ledger.records import CallPurpose
from foreman.models.base import ModelRequest
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, is_synthesis, of_type, payload, plan_of, task, worker


def is_compaction(request: ModelRequest) -> bool:
    return request.system == COMPACTION_SYSTEM


def summariser(request: ModelRequest) -> str:
    """A summary naming the ids it was given, short enough to fit."""
    sent = json.loads(request.messages[0].content)
    ids = sorted(
        set(part.split('"id": "')[1].split('"')[0] for part in sent["results"].split("\n"))
    )
    return "summary of " + ",".join(ids)


def entries(count: int, size: int) -> list[dict]:
    return [{"id": f"t{i}", "output": f"r{i} " + "x" * size} for i in range(1, count + 1)]


async def test_entries_within_the_budget_are_left_alone_without_a_call() -> None:
    model = ScriptedModel([])
    given = entries(3, 100)

    done = await compact(given, budget=1000, purpose="p", model=model)

    assert done.entries == given and done.compacted == [] and model.requests == []
    assert done.tokens_before == done.tokens_after == sum(tokens_of(e) for e in given)


async def test_older_entries_become_summaries_and_the_newest_stay_whole() -> None:
    model = ScriptedModel(summariser)
    given = entries(10, 400)  # ~10 x 110 tokens against a budget of 600

    done = await compact(given, budget=600, purpose="answer the request", model=model)

    assert done.tokens_before > 600 >= done.tokens_after
    kept = [e for e in done.entries if "id" in e]
    assert kept == given[-len(kept) :] and kept  # the newest, unchanged
    summaries = [e for e in done.entries if "summary_of" in e]
    covered = [key for s in summaries for key in s["summary_of"]]
    assert covered == done.compacted == [e["id"] for e in given[: -len(kept)]]
    assert all(s["summary"] == "summary of " + ",".join(sorted(s["summary_of"])) for s in summaries)
    for request in model.requests:  # no summary call overflows the budget either
        assert tokens_of(request.system + request.messages[0].content) <= 600
        assert payload(request)["purpose"] == "answer the request"
        assert request.max_tokens <= 600


async def test_a_failed_summary_call_is_replaced_by_a_cut_that_fits() -> None:
    model = ScriptedModel(lambda request: ModelError("400 refused"))

    done = await compact(entries(10, 400), budget=600, purpose="p", model=model)

    assert done.failed >= 1 and done.tokens_after <= 600
    assert all(
        s["summary"].endswith("the full results are in the store]")
        for s in done.entries
        if "summary_of" in s
    )


async def test_results_many_times_the_budget_are_summarised_again_until_they_fit() -> None:
    model = ScriptedModel(lambda request: "s" * 2000)  # a summariser that ignores max_tokens

    done = await compact(entries(40, 2000), budget=400, purpose="p", model=model)

    assert done.tokens_before > 20_000
    assert done.tokens_after <= 400
    assert len(done.compacted) == 40 or all("summary_of" in e or "id" in e for e in done.entries)
    covered = {key for e in done.entries for key in e.get("summary_of", [e.get("id")])}
    assert covered == {f"t{i}" for i in range(1, 41)}  # every result is accounted for


async def test_a_budget_too_small_for_summaries_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 256"):
        await compact([], budget=100, purpose="p", model=ScriptedModel([]))
    with pytest.raises(ConfigError, match="context_budget must be at least 256"):
        Orchestrator(Registry([worker("w")]), model=ScriptedModel([]), context_budget=10)


async def test_synthesis_reads_summaries_while_workers_and_the_store_keep_full_outputs() -> None:
    team = Registry([worker("researcher"), worker("writer")])
    long = {f"do t{i}": f"finding {i} " + "detail " * 300 for i in range(1, 6)}
    plan = plan_of(*(task(f"t{i}") for i in range(1, 6)), task("t6", "writer", "t1", "t2"))
    synthesis_inputs: list[dict] = []

    def synthesis(request: ModelRequest) -> str:
        synthesis_inputs.append(payload(request))
        return "FINAL"

    script = Script(tasks=long, synthesis=synthesis)
    model = ScriptedModel(lambda r: summariser(r) if is_compaction(r) else script(r))
    store = MemoryStore()
    events: list = []
    orchestrator = Orchestrator(team, model=model, store=store, context_budget=1500)

    result = await orchestrator.run("report", plan=plan, on_event=events.append)

    assert result.status is RunStatus.succeeded and result.answer == "FINAL"
    [sent] = synthesis_inputs
    assert tokens_of(sent["results"]) <= 1500
    summarised = [key for e in sent["results"] if "summary_of" in e for key in e["summary_of"]]
    assert summarised and "t6" not in summarised  # the newest result stays whole
    # the dependant got its dependencies' full outputs, and the store keeps them all
    [t6_request] = [
        r
        for r in model.requests
        if not (is_compaction(r) or is_synthesis(r)) and payload(r)["instructions"] == "do t6"
    ]
    assert payload(t6_request)["inputs"] == {"t1": long["do t1"], "t2": long["do t2"]}
    stored = await store.load_tasks(result.run_id)
    assert all(stored[f"t{i}"].output == long[f"do t{i}"] for i in range(1, 6))
    calls = await store.list_calls(run_id=result.run_id)
    compactions = [c for c in calls if c.purpose is CallPurpose.compaction]
    assert len(compactions) == sum(1 for r in model.requests if is_compaction(r)) >= 1
    assert all(c.parent == "compaction" and c.task_id is None for c in compactions)
    [event] = of_type(events, ContextCompacted)
    assert (event.purpose, event.compacted) == ("synthesis", summarised)
    assert event.tokens_before > 1500 >= event.tokens_after
    assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event
    assert orchestrator.settings["context_budget"] == 1500


async def test_without_a_context_budget_synthesis_reads_every_result_whole() -> None:
    team = Registry([worker("researcher")])
    long = {f"do t{i}": "detail " * 300 for i in range(1, 4)}
    seen: list[dict] = []
    script = Script(tasks=long, synthesis=lambda r: seen.append(payload(r)) or "FINAL")
    orchestrator = Orchestrator(team, model=ScriptedModel(script))

    await orchestrator.run("x", plan=plan_of(task("t1"), task("t2"), task("t3")))

    assert [e["output"] for e in seen[0]["results"]] == list(long.values())
