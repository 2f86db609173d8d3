"""Context compaction: what the orchestrator reads, fitted to a token budget.

The orchestrator reads workers' results for its own calls (synthesis today; replanning and
delegation turns too). Many or long results can exceed the model's window, so once they
pass a budget the older ones are condensed into summaries written *for that purpose* (a
model call each, recorded in the ledger as ``compaction``), and the newest stay whole.
This is for the orchestrator's reading only: full outputs stay in the store and reach the
workers that depend on them unchanged.

``compact`` is the function; ``Compactor`` binds it to one run's execution (its ledger,
events and budget) so any driver can call ``await compactor.fit(entries, purpose)``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foreman.engine.calls import call_worker, retried
from foreman.engine.together import all_settled
from foreman.events import ContextCompacted
from foreman.ledger.recorder import CHARS_PER_TOKEN, CallLedger
from foreman.ledger.records import CallPurpose
from foreman.models.base import Model
from foreman.models.retry import CallLog, OnRetry, RetryPolicy
from foreman.workers.spec import Worker

if TYPE_CHECKING:
    from foreman.engine.assembly import Fit
    from foreman.engine.lifecycle import Execution

COMPACTION_SYSTEM = """\
You condense results for a colleague who has too little room to read them in full. You \
receive a JSON object with the `purpose` the colleague reads them for and the `results`. \
Write one dense summary of the results that keeps every fact, figure, name, decision and \
open problem that matters for that purpose, and says which result (by id) each comes from. \
Drop repetition and filler. Answer with the summary only."""

COMPACTOR = Worker(
    name="compactor",
    description="Condenses older results so the orchestrator's context fits its budget.",
    system_prompt=COMPACTION_SYSTEM,
    max_tokens=1024,
    timeout=300,
)

#: The fewest tokens a summary is allowed, however tight the budget: shorter says nothing.
MIN_SUMMARY_TOKENS = 64
#: Rounds of summarising the summaries, for results many times the budget.
MAX_PASSES = 6
#: Summary calls in flight at once (a wide compaction is many calls).
MAX_CONCURRENT_SUMMARIES = 8
#: Tokens of a summary call's JSON around the purpose and the results.
_FRAME = 16


def tokens_of(value: Any) -> int:
    """Tokens ``value`` most likely takes as JSON, counted locally (as the ledger does)."""
    return -(-len(_json(value)) // CHARS_PER_TOKEN)


@dataclass
class Compaction:
    """What ``compact`` made of the entries: the new list, and what it cost."""

    entries: list[dict[str, Any]]
    #: Ids of the entries replaced by summaries, oldest first.
    compacted: list[str] = field(default_factory=list)
    tokens_before: int = 0
    tokens_after: int = 0
    #: Summary calls (retries included), and groups whose call failed (cut instead).
    attempts: int = 0
    failed: int = 0


async def compact(
    entries: Sequence[dict[str, Any]],
    *,
    budget: int,
    purpose: str,
    model: Model,
    scope: CallLog | None = None,
    retry: RetryPolicy | None = None,
    call_timeout: float | None = None,
    on_retry: OnRetry | None = None,
) -> Compaction:
    """``entries`` (oldest first, JSON-able, each with an ``id``) within ``budget`` tokens.

    Unchanged when they fit. Otherwise the newest entries that fit in half the budget stay
    whole, and the older ones, in groups that fit one call within the budget (so no
    summary call overflows either), become ``{"summary_of": [ids], "summary": text}``
    entries sharing the other half. A summary call that fails, or a summary longer than
    its share, is cut to its share with a note: the result fits, and says where the rest
    is. So many groups that even their shortest summaries do not fit are summarised again
    (a few passes, while each one gains room)."""
    if budget < 4 * MIN_SUMMARY_TOKENS:
        raise ValueError(f"a context budget needs at least {4 * MIN_SUMMARY_TOKENS} tokens")
    worker = COMPACTOR if retry is None else COMPACTOR.model_copy(update={"retry": retry})
    current = list(entries)
    done = Compaction(current, tokens_before=sum(tokens_of(entry) for entry in current))
    done.tokens_after = done.tokens_before
    # A group and the prompt around it fit the budget, so no summary call overflows either.
    limit = max(budget // 2, budget - tokens_of(COMPACTION_SYSTEM + purpose) - _FRAME)
    calls = asyncio.Semaphore(MAX_CONCURRENT_SUMMARIES)
    for _ in range(MAX_PASSES):
        if done.tokens_after <= budget:
            break
        was = done.tokens_after
        sizes = [tokens_of(entry) for entry in current]
        kept_tokens, first_kept = 0, len(current)
        while first_kept > 0 and kept_tokens + sizes[first_kept - 1] <= budget // 2:
            first_kept -= 1
            kept_tokens += sizes[first_kept]
        older, kept = current[:first_kept], current[first_kept:]
        groups = _groups(older, limit)
        overhead = sum(tokens_of({"summary_of": ids, "summary": ""}) for ids, _ in groups)
        share = max(MIN_SUMMARY_TOKENS, (budget - kept_tokens - overhead) // len(groups))
        sized = worker.model_copy(update={"max_tokens": share})

        async def summarise(text: str, sized: Worker = sized, share: int = share) -> str:
            async with calls:
                outcome = await call_worker(
                    sized,
                    [model],
                    COMPACTION_SYSTEM,
                    _json({"purpose": purpose, "results": text}),
                    call_timeout=call_timeout if call_timeout is not None else sized.timeout,
                    on_retry=on_retry,
                    scope=scope,
                )
            done.attempts += outcome.attempts
            if outcome.error is not None:
                done.failed += 1
                return _cut(text, share)
            return _cut(str(outcome.output).strip(), share)

        texts = await all_settled(*(summarise(text) for _, text in groups))
        summaries = [
            {"summary_of": ids, "summary": text}
            for (ids, _), text in zip(groups, texts, strict=True)
        ]
        done.compacted += [str(entry.get("id")) for entry in older if "summary_of" not in entry]
        current = done.entries = [*summaries, *kept]
        done.tokens_after = sum(tokens_of(entry) for entry in current)
        if done.tokens_after >= was:  # no progress (ids alone overflow it): stop spending
            break
    return done


def compactor_of(run: Execution) -> Fit | None:
    """``Compactor.fit`` for an execution whose settings have a ``context_budget``; ``None``
    (read everything whole) when they have none. What a driver hands ``assemble``."""
    deps = run.deps
    budget = deps.settings.context_budget
    if budget is None:
        return None
    return Compactor(
        run.run_id,
        deps.models.default,
        budget,
        run.journal.ledger,
        run.emit,
        retry=deps.retry,
        call_timeout=deps.own_timeout(COMPACTOR.timeout),
    ).fit


class Compactor:
    """``compact`` for one run's execution: its calls in the run's ledger, a
    ``context_compacted`` event for each compaction, retries reported like the engine's
    own. Drivers call ``fit`` with whatever they are about to show the orchestrator."""

    def __init__(
        self,
        run_id: str,
        model: Model,
        budget: int,
        ledger: CallLedger,
        emit: Callable[[Any], None],
        *,
        retry: RetryPolicy | None = None,
        call_timeout: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.model = model
        self.budget = budget
        self.ledger = ledger
        self.emit = emit
        self.retry = retry
        self.call_timeout = call_timeout

    async def fit(
        self, entries: Sequence[dict[str, Any]], purpose: str, goal: str
    ) -> list[dict[str, Any]]:
        """``entries`` within the budget. ``purpose`` names the call they are read for
        (``synthesis``, ``replan``...) in the event; ``goal`` tells the summariser what
        the reader must do with them, so the summaries keep what matters for it."""
        done = await compact(
            entries,
            budget=self.budget,
            purpose=goal,
            model=self.model,
            scope=self.ledger.scope(CallPurpose.compaction),
            retry=self.retry,
            call_timeout=self.call_timeout,
            on_retry=retried(self.emit, self.run_id, "compaction"),
        )
        if done.compacted:
            self.emit(
                ContextCompacted(
                    run_id=self.run_id,
                    purpose=purpose,
                    compacted=done.compacted,
                    tokens_before=done.tokens_before,
                    tokens_after=done.tokens_after,
                    failed=done.failed,
                )
            )
        return done.entries


def _groups(entries: Sequence[dict[str, Any]], limit: int) -> list[tuple[list[str], str]]:
    """Consecutive entries as (ids, JSON text) groups of at most ``limit`` tokens; an
    entry larger than that is sliced, each slice a group of its own. A summary entry
    brings the ids it summarised. A fifth of the room is left for the escapes the text
    gains inside the call's JSON."""
    chars = limit * CHARS_PER_TOKEN * 4 // 5
    groups: list[tuple[list[str], str]] = []
    ids: list[str] = []
    text = ""
    for entry in entries:
        own = entry["summary_of"] if "summary_of" in entry else [str(entry.get("id"))]
        encoded = _json(entry)
        for start in range(0, len(encoded), chars):
            piece = encoded[start : start + chars]
            if text and len(text) + len(piece) > chars:
                groups.append((ids, text))
                ids, text = [], ""
            ids += [key for key in own if key not in ids]
            text += piece if not text else "\n" + piece
    if text:
        groups.append((ids, text))
    return groups


def _cut(text: str, tokens: int) -> str:
    """``text`` within ``tokens`` (as JSON, escapes counted), with a note of what was cut
    when it did not fit."""
    room = tokens * CHARS_PER_TOKEN
    escapes = len(_json([text])) - 4 - len(text)
    if len(text) + escapes <= room:
        return text
    note = " [cut: the full results are in the store]"
    return text[: max(0, room - len(note) - escapes)] + note


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
