"""Auditing a run's books against fake providers' bills (see ``fake_provider``).

``audit`` matches every ledger row with the request a fake server received (by provider,
model and prompt), checks the row carries exactly the tokens that server answered and its
price, and that the run's books are the sum of the rows and of the bill. Shared by the
``test_books_*`` modules, with the ``fakes`` and ``store`` fixtures they import.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fake_provider import Charge, FakeProvider, Received, WireScript
from foreman import Orchestrator
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord, CallStatus
from foreman.models.anthropic import AnthropicModel
from foreman.models.base import Model, Usage
from foreman.models.openai import OpenAIModel
from foreman.models.retry import RetryPolicy
from foreman.plan.schema import Plan
from foreman.results import RunResult
from foreman.store import MemoryStore, SQLiteStore
from foreman.store.base import Store
from foreman.workers import Registry
from helpers import plan_of, task, worker

PLANNER = "anthropic:claude-sonnet-4-6"  # provider A, $3 / $15
DEFAULT = "openai:gpt-5.4"  # provider B: synthesis, $2.5 / $15
RESEARCH = "openai:gpt-5.4-mini"  # $0.75 / $4.5
RESEARCH_BACKUP = "anthropic:claude-haiku-4-5"  # the other provider, $1 / $5
WRITER = "openai:gpt-5.2"  # $1.75 / $14
JUDGE = "anthropic:claude-opus-4-1"  # the validator, on the other provider, $15 / $75

NO_WAIT = RetryPolicy(initial_delay=0, jitter=False)
TEAM = Registry(
    [
        worker("researcher", model=RESEARCH, fallback_model=RESEARCH_BACKUP),
        worker("writer", model=WRITER),
        worker("critic", model=JUDGE),
    ]
)
PLAN = plan_of(task("t1"), task("t2"), task("t3", "writer", "t1", "t2"))


def plan_answer(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.model_dump_json(exclude_none=True))


STORES = ["memory", "sqlite"]

#: How a call that got no answer ends; the provider may have done the work, so its input
#: stays on the books at its estimate.
CUT_SHORT = (CallStatus.interrupted, CallStatus.cancelled, CallStatus.timeout)


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's keys, base URLs and price overrides out of the tests."""
    for name in [n for n in os.environ if n.startswith(("OPENAI_", "ANTHROPIC_", "FOREMAN_"))]:
        monkeypatch.delenv(name)


@contextlib.contextmanager
def two_fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    """Provider A (Anthropic) and provider B (OpenAI)."""
    with FakeProvider() as anthropic, FakeProvider() as openai:
        yield anthropic, openai


@contextlib.asynccontextmanager
async def open_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    try:
        yield store
    finally:
        await store.aclose()


def models_on(urls: tuple[str, str], *names: str) -> dict[str, Model]:
    """Real adapters for ``names``, each pointed at its provider's fake (``urls``: the
    Anthropic fake's, the OpenAI fake's)."""
    anthropic, openai = urls
    built: dict[str, Model] = {}
    for name in names:
        provider, model_id = name.split(":", 1)
        if provider == "anthropic":
            built[name] = AnthropicModel(model_id, api_key="k", base_url=anthropic)
        else:
            built[name] = OpenAIModel(model_id, api_key="k", base_url=f"{openai}/v1")
    return built


def orchestrator(
    fakes: tuple[FakeProvider, FakeProvider] | tuple[str, str],
    store: Store,
    team: Registry = TEAM,
    **options: Any,
) -> Orchestrator:
    """The team on the fakes (or their URLs): planner on A, synthesis on B."""
    urls = tuple(fake if isinstance(fake, str) else fake.url for fake in fakes)
    names = {PLANNER, DEFAULT, RESEARCH, RESEARCH_BACKUP, WRITER, JUDGE}
    return Orchestrator(
        team,
        model=DEFAULT,
        planner_model=PLANNER,
        models=models_on((urls[0], urls[1]), *names),
        store=store,
        retry=NO_WAIT,
        **options,
    )


@contextlib.asynccontextmanager
async def models_closed(orch: Orchestrator) -> AsyncIterator[Orchestrator]:
    """The orchestrator, its model clients closed after (the store stays open to audit)."""
    try:
        yield orch
    finally:
        await orch.models.aclose()


def serve(fakes: tuple[FakeProvider, FakeProvider], script: WireScript) -> None:
    for fake in fakes:
        fake.respond_with(script)


# --- the audit -----------------------------------------------------------------------------


def _key_of_request(received: Received) -> tuple[Any, ...]:
    body = received.body
    messages = list(body["messages"])
    if received.path == "/v1/messages":
        provider, system = "anthropic", body.get("system")
    else:
        provider = "openai"
        system = messages.pop(0)["content"] if messages[0]["role"] == "system" else None
    return provider, body["model"], system, json.dumps(messages)


def _key_of_row(row: CallRecord) -> tuple[Any, ...]:
    assert row.prompt is not None, "the audit needs the prompts (record_prompts=True)"
    return (
        row.provider,
        row.model.split(":", 1)[1],
        row.prompt["system"],
        json.dumps(row.prompt["messages"]),
    )


def _as_billed(usage: Usage) -> tuple[int, int, int, int]:
    """A ledger usage in the bill's terms (input includes the cached prompt tokens)."""
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return prompt, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens


def _billed(charge: Any) -> tuple[int, int, int, int]:
    u = charge.usage
    return u.input_tokens, u.output_tokens, u.cache_read_tokens or 0, u.cache_write_tokens or 0


async def audit(
    store: Store,
    run_id: str,
    fakes: Sequence[FakeProvider],
    *,
    estimated: int = 0,
    price: Callable[[Charge], Decimal] = Charge.price,
) -> list[CallRecord]:
    """Check every ledger row against the request the servers saw and what they billed,
    and the run's books against the rows and the bill. ``estimated``: rows of calls that
    never got an answer (cut short), whose input is counted locally. ``price``: what the
    provider charges for an answer (genai-prices' list price unless told)."""
    rows = await store.list_calls(run_id=run_id, with_prompts=True)
    requests = [r for fake in fakes for r in fake.requests]

    by_key: dict[tuple[Any, ...], list[CallRecord]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.started_at, r.attempt)):
        by_key[_key_of_row(row)].append(row)
    bill = [charge for fake in fakes for charge in fake.bill]
    unsent: list[CallRecord] = []  # cut short before the request left: no server saw them
    for received in requests:
        queue = by_key.get(_key_of_request(received))
        charge = next((c for fake in fakes if (c := fake.charged(received))), None)
        while queue and charge is not None and queue[0].estimated:
            unsent.append(queue.pop(0))
        assert queue, f"a request the server saw is not on the ledger: {received.body}"
        row = queue.pop(0)
        if charge is not None:  # answered: exactly what the server said, at its price
            assert _as_billed(row.usage) == _billed(charge), row
            assert not row.estimated and row.answered_by == charge.model
            assert row.cost_usd == pytest.approx(float(price(charge)), rel=1e-9), row
            assert row.status in (CallStatus.ok, CallStatus.error)
        elif row.status is CallStatus.error:  # refused: billed nothing, typed error
            assert row.usage == Usage() and not row.estimated and not row.cost_usd, row
            assert row.error_type in ("RateLimitError", "ProviderServerError"), row
        else:  # never answered (cut short, timed out): an estimate of its input, flagged
            assert row.status in CUT_SHORT, row
            assert row.estimated and row.usage.input_tokens > 0 and not row.usage.output_tokens
    unsent += [row for queue in by_key.values() for row in queue]
    for row in unsent:
        assert row.estimated and row.status in CUT_SHORT, row
    assert len(rows) == len(requests) + len(unsent)
    assert sum(row.estimated for row in rows) == estimated

    # Attempts are numbered 1, 2, 3... per parent, across models, retries and reviews.
    attempts: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        attempts[row.parent].append(row.attempt)
    for parent, numbers in attempts.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (parent, numbers)

    # The run's books: the sum of its rows, which is the bill plus the estimates.
    books = Books.of(rows)
    billed = sum((Usage(**_foreman(c)) for c in bill), Usage())
    guessed = sum((row.usage for row in rows if row.estimated), Usage())
    assert books.usage == billed + guessed
    charged = sum((price(charge) for charge in bill), Decimal())
    assert books.cost_usd == pytest.approx(float(charged) + _cost(rows, estimated=True), rel=1e-9)
    stored = await store.get_run(run_id)
    assert (stored.usage, stored.calls) == (books.usage, len(rows))
    assert stored.cost_usd == pytest.approx(books.cost_usd, rel=1e-9)
    return rows


def _foreman(charge: Any) -> dict[str, int]:
    prompt, output, read, write = _billed(charge)
    return {
        "input_tokens": prompt - read - write,
        "output_tokens": output,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
    }


def _cost(rows: list[CallRecord], *, estimated: bool) -> float:
    return sum(row.cost_usd or 0.0 for row in rows if row.estimated is estimated)


def same_books(result: RunResult, rows: list[CallRecord]) -> None:
    books = Books.of(rows)
    assert (result.usage, result.calls) == (books.usage, books.calls)
    assert result.cost_usd == pytest.approx(books.cost_usd, rel=1e-9)
    for task_id, task_result in result.tasks.items():
        own = [row for row in rows if row.parent == f"task:{task_id}"]
        assert task_result.usage == Books.of(own).usage, task_id


# --- fixtures of the books tests (registered by tests/conftest.py) -----------------------

Fakes = tuple[FakeProvider, FakeProvider]


@pytest.fixture
def provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real provider keys, prices or endpoints from the developer's environment."""
    clean_env(monkeypatch)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    """Billing fake providers: A (Anthropic) and B (OpenAI)."""
    with two_fakes() as both:
        yield both


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each books scenario on every store."""
    async with open_store(request.param, tmp_path) as opened:
        yield opened
