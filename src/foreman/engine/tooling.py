"""A worker with tools: a bounded loop of model turns and the tool calls they ask for.

Each turn is one model call under the task's policy (retries, fallback model, the run's
budget, the ledger). The model is offered only the tools the worker's allow-list names; a
call of any other tool is refused (the model is told so) and never run, whatever text
asked for it. A risky tool's call goes through the approval gate with its exact
arguments, and waits (the task parks ``waiting``) when nobody can answer now. Tool
failures go back to the model as error results, never crash the task. The last turn is
asked with ``tool_choice="none"``, so the loop always ends with an answer.

Exactly-once: with a journal (``ToolJournal``), every answered turn and every tool call is
stored, the call ``started`` before the tool runs and ``finished`` after. Run again (on
resume), the loop replays the journal: stored turns are not asked again, finished calls
are not run again. A call that started and never finished may have run: an idempotent
tool runs it again with the same idempotency key, any other asks a person first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from foreman.engine.approvals import ApprovalGate
from foreman.engine.calls import OnFallback, answer_parser, call_request, schema_of
from foreman.engine.journal import RunJournal
from foreman.engine.together import all_settled
from foreman.errors import ModelError, OutputValidationError, ToolError
from foreman.events import ToolCalled, ToolFinished
from foreman.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    storable,
)
from foreman.models.retry import CallLog, CallOutcome, OnRetry
from foreman.tools.base import RiskLevel, Tool, ToolContext
from foreman.tools.function import as_text
from foreman.tools.records import (
    ToolCallRecord,
    ToolCallStatus,
    ToolOutcome,
    ToolTurnRecord,
    excerpt,
    idempotency_key,
    input_digest,
)
from foreman.tools.toolbox import Toolbox
from foreman.workers.spec import Worker

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]


class ToolJournal(Protocol):
    """Where a run's tool loops are checkpointed (``engine.tool_journal`` over a store)."""

    async def load(self, task_id: str) -> tuple[list[ToolTurnRecord], list[ToolCallRecord]]:
        """The task's stored turns and calls."""

    async def save_turn(self, record: ToolTurnRecord) -> None:
        """Store an answered turn (before any of its calls runs)."""

    async def save_call(self, record: ToolCallRecord) -> None:
        """Store a call, durably: ``started`` is written before the tool runs."""


@dataclass(frozen=True)
class StoreToolJournal:
    """The tool journal of one run in its store, written through the run's journal (a
    turn rides with the ledger records so far); a call is written on its own, at once."""

    journal: RunJournal

    async def load(self, task_id: str) -> tuple[list[ToolTurnRecord], list[ToolCallRecord]]:
        store, run_id = self.journal.store, self.journal.run_id
        turns = await store.list_tool_turns(run_id, task_id)
        return turns, await store.list_tool_calls(run_id, task_id)

    async def save_turn(self, record: ToolTurnRecord) -> None:
        await self.journal.save_tool_turn(record)

    async def save_call(self, record: ToolCallRecord) -> None:
        await self.journal.store.save_tool_call(record)


def tool_journal(journal: RunJournal) -> ToolJournal | None:
    """The run's tool journal, or None for a store that keeps none."""
    return StoreToolJournal(journal) if journal.store.supports_tool_journal else None


async def allowed_tools(
    toolbox: Toolbox, worker: Worker, run_id: str, warned: set[tuple[str, str]]
) -> list[Tool]:
    """The tools ``worker``'s allow-list names, its sources opened first (their errors
    raise). An entry that matches no tool (a misspelt name, built-in tools not switched
    on) is logged once per run (``warned``), not an error: the worker gets the others,
    or makes a plain call."""
    await toolbox.open()
    for name in worker.tools:
        if (worker.name, name) not in warned and not toolbox.allowed([name]):
            warned.add((worker.name, name))
            log.warning(
                "run %s: worker %r allows the tool %r, which no tool matches (known: %s)",
                run_id,
                worker.name,
                name,
                ", ".join(sorted(toolbox.names())) or "none",
            )
    return toolbox.allowed(worker.tools)


class ApprovalPending(Exception):
    """A tool call waits for a person's decision: the task parks ``waiting``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"tool call {key} waits for approval")
        self.key = key


@dataclass
class ToolLoop:
    """One task's tool loop; ``run`` returns the final answer as a ``CallOutcome``."""

    run_id: str
    task_id: str
    worker: Worker
    tools: list[Tool]
    models: list[Model]
    emit: Emit
    gate: ApprovalGate | None = None
    journal: ToolJournal | None = None
    #: Which loop of the task this is (a fallback worker's or a revision's is another).
    loop: int = 0
    #: The task's tool calls numbered by its earlier loops; ``run`` moves it on.
    numbered: int = 0
    call_timeout: float | None = None
    on_retry: OnRetry | None = None
    on_fallback: OnFallback | None = None
    scope: CallLog | None = None

    async def run(self, system: str, user: str, output_schema: Any = None) -> CallOutcome:
        """Turn after turn until the model answers without calling a tool, or the last
        turn (which may not call any). Raises ``ApprovalPending`` when a call waits."""
        digest = input_digest(system, user)
        turns, calls = await self._journal(digest)
        allowed = {tool.name: tool for tool in self.tools}
        specs = [tool.spec() for tool in self.tools]
        parse = answer_parser(output_schema)
        messages = [Message(role="user", content=user)]
        outcome = CallOutcome()
        for turn in range(1, self.worker.max_tool_turns + 1):
            last = turn == self.worker.max_tool_turns
            request = ModelRequest(
                system=system,
                messages=list(messages),
                tools=specs,
                tool_choice="none" if last else "auto",
                output_schema=schema_of(output_schema) if output_schema else None,
                max_tokens=self.worker.max_tokens,
                temperature=self.worker.temperature,
            )
            response = turns.get(turn)
            if response is None:
                answered = await self._ask(request, parse, last)
                outcome.attempts += answered.attempts
                outcome.usage += answered.usage
                if answered.error is not None:
                    outcome.error = answered.error
                    return outcome
                response, parsed = answered.output
                if self.journal is not None:
                    await self.journal.save_turn(
                        ToolTurnRecord(
                            run_id=self.run_id,
                            task_id=self.task_id,
                            loop=self.loop,
                            turn=turn,
                            response=response,
                            input_digest=digest,
                        )
                    )
            else:  # answered before a crash or a pause: not asked again
                outcome.attempts += 1  # the attempt that answered it, in that execution
                parsed = None if response.tool_calls and not last else parse(response)
            outcome.model = response.model
            if last or not response.tool_calls:
                outcome.output = parsed
                return outcome
            messages.append(response.as_message())
            numbered = self._number(turn, response.tool_calls, calls)
            results = await all_settled(  # every call settled first: none is cut short
                *(
                    self._call(number, turn, index, call, allowed, calls.get(number))
                    for number, index, call in numbered
                )
            )
            messages.append(Message(role="user", tool_results=list(results)))
        raise AssertionError("unreachable: the last turn always returns")  # pragma: no cover

    def _number(
        self, turn: int, tool_calls: list[ToolCall], calls: dict[int, ToolCallRecord]
    ) -> list[tuple[int, int, ToolCall]]:
        """Each call's number (its seq) and place. A call stored at its place (this loop,
        turn, index) keeps its number; any other takes the next, skipping the numbers
        stored calls hold elsewhere: a turn asked again on resume (never stored) may ask
        for other calls than before, and must not take a later loop's stored call."""
        places = {(r.loop, r.turn, r.index, r.tool): r.seq for r in calls.values()}
        numbered: list[tuple[int, int, ToolCall]] = []
        taken = set(calls)
        for index, call in enumerate(tool_calls):
            seq = places.get((self.loop, turn, index, call.name))
            if seq is None or calls[seq].arguments != call.arguments:
                seq = self.numbered + index + 1
                while seq in taken:
                    seq += 1
            taken.add(seq)
            numbered.append((seq, index, call))
        self.numbered = max([self.numbered + len(tool_calls), *(seq for seq, _, _ in numbered)])
        return numbered

    async def _journal(
        self, digest: str
    ) -> tuple[dict[int, ModelResponse], dict[int, ToolCallRecord]]:
        """This loop's stored turns (those asked with the same input) and the task's calls.

        A turn stored for another input is not replayed: the task changed before it ran
        again. Its calls stay: the numbering skips them, and one made again at its place
        with the same arguments reuses its result (its effect has happened)."""
        if self.journal is None:
            return {}, {}
        turns, calls = await self.journal.load(self.task_id)
        return (
            {
                record.turn: record.response
                for record in turns
                if record.loop == self.loop and record.input_digest in (digest, None)
            },
            {record.seq: record for record in calls},
        )

    async def _ask(self, request: ModelRequest, parse: Callable, last: bool) -> CallOutcome:
        """One turn: the model's answer with, for a final answer, its parsed output."""

        def turn(response: ModelResponse) -> tuple[ModelResponse, Any]:
            if response.tool_calls and not last:
                return response, None
            if response.tool_calls and not response.text.strip():
                # Asked for no tools (its last turn) and calling them all the same, with no
                # answer: asked again, as an answer of the wrong shape is, not taken as "".
                raise OutputValidationError(
                    f"{response.model}: tool calls on the last turn (max_tool_turns), where "
                    "an answer is due"
                )
            return response, parse(response)

        return await call_request(
            self.worker,
            self.models,
            request,
            parse=turn,
            call_timeout=self.call_timeout,
            on_retry=self.on_retry,
            on_fallback=self.on_fallback,
            scope=self.scope,
        )

    async def _call(
        self,
        seq: int,
        turn: int,
        index: int,
        call: ToolCall,
        allowed: dict[str, Tool],
        stored: ToolCallRecord | None,
    ) -> ToolResult:
        """Run one call (or reuse its stored result), as a result for the model."""
        if stored is not None and stored.status is ToolCallStatus.finished:
            return _result_of(stored, call.id)
        record = ToolCallRecord(
            run_id=self.run_id,
            task_id=self.task_id,
            seq=seq,
            loop=self.loop,
            turn=turn,
            index=index,
            call_id=call.id,
            tool=call.name,
            worker=self.worker.name,
            arguments=call.arguments,
            idempotency_key=idempotency_key(self.run_id, self.task_id, seq),
        )
        tool = allowed.get(call.name)
        if tool is None:
            why = (
                f"the tool {call.name!r} is not allowed for the worker {self.worker.name!r}; "
                f"it can call: {', '.join(sorted(allowed)) or 'no tools'}"
            )
            return await self._finish(self._called(record), ToolOutcome.refused, why)
        cut_short = stored is not None  # started before, never finished: may have run
        asks = tool.risk is not RiskLevel.low or (cut_short and not tool.idempotent)
        if self.gate is None and asks:
            why = f"the tool {tool.name!r} needs an approval and this run has no approver"
            return await self._finish(self._called(record), ToolOutcome.rejected, why)
        if self.gate is not None:  # approval_requested comes before tool_called
            decision = await self.gate.check_tool(
                self.run_id,
                record.key,
                self.worker,
                tool,
                call.arguments,
                may_have_run=cut_short,
            )
            if decision.verdict == "wait":
                raise ApprovalPending(record.key)
            if decision.verdict == "reject":
                why = str(decision.reason)
                return await self._finish(self._called(record), ToolOutcome.rejected, why)
        return await self._execute(tool, self._called(record))

    def _called(self, record: ToolCallRecord) -> ToolCallRecord:
        """Announce the call (``tool_called``) once its fate is settled, before it runs
        or is refused."""
        self.emit(
            ToolCalled(
                run_id=self.run_id,
                task_id=self.task_id,
                worker=self.worker.name,
                tool=record.tool,
                arguments=record.arguments,
                call_id=record.call_id,
                key=record.key,
            )
        )
        return record

    async def _execute(self, tool: Tool, record: ToolCallRecord) -> ToolResult:
        if self.journal is not None:
            await self.journal.save_call(record)  # durably, before the tool runs
        context = ToolContext(
            run_id=self.run_id,
            task_id=self.task_id,
            worker=self.worker.name,
            call_id=record.call_id,
            idempotency_key=record.idempotency_key,
        )
        started = time.perf_counter()
        limit = asyncio.timeout(tool.timeout)
        try:
            async with limit:
                text = as_text(await tool.call(record.arguments, context))  # str, by contract
        except TimeoutError as exc:
            # Its own time limit, or a TimeoutError the tool raised (and says why).
            text = _timed_out(tool) if limit.expired() else f"TimeoutError: {exc}"
            outcome = None
        except ToolError as exc:
            text, outcome = str(exc), None
        except ModelError as exc:  # a tool that calls a model: its failure is the tool's
            text, outcome = str(exc), None
        except (Exception, SystemExit) as exc:  # SystemExit: a CLI parser inside a tool
            text, outcome = f"{type(exc).__name__}: {exc}", None
        else:
            outcome = ToolOutcome.ok
        latency = time.perf_counter() - started
        return await self._finish(record, outcome or ToolOutcome.error, storable(text), latency)

    async def _finish(
        self, record: ToolCallRecord, outcome: ToolOutcome, text: str, latency: float | None = None
    ) -> ToolResult:
        finished = record.model_copy(
            update={
                "status": ToolCallStatus.finished,
                "outcome": outcome,
                "result": text,
                "latency": latency,
                "finished_at": time.time(),
            }
        )
        if self.journal is not None:
            await self.journal.save_call(finished)
        self.emit(
            ToolFinished(
                run_id=self.run_id,
                task_id=self.task_id,
                tool=record.tool,
                call_id=record.call_id,
                key=record.key,
                outcome=outcome,
                latency=latency or 0.0,
                result=excerpt(text),
            )
        )
        return _result_of(finished, record.call_id)


def _result_of(record: ToolCallRecord, call_id: str) -> ToolResult:
    return ToolResult(
        call_id=call_id,
        content=record.result or "",
        is_error=record.outcome is not ToolOutcome.ok,
    )


def _timed_out(tool: Tool) -> str:
    """What the model hears of a call that outlasted its timeout. A sync tool's thread
    cannot be stopped, so the call may still finish: a tool that is not idempotent says
    so, lest the model repeat a side effect (a repeat of a risky tool asks a person anyway)."""
    text = f"the tool {tool.name} gave no result within {tool.timeout:g}s"
    if tool.idempotent:
        return text
    return text + " and may still complete: check whether it took effect before calling it again"
