"""A store in process memory: the default for the Python API, and for tests.

It keeps the same contract as the SQLite store (the conformance suite runs against both),
so approvals, resume and replay work within one process without a file. Plans, task
results and ledger records are kept as JSON, as SQLite keeps them: serialising one is
several times cheaper than a deep copy, and they are written far more often than read.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from typing import Any

from foreman.errors import RunLockedError, UnknownRunError
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.models.pricing import run_price
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.store.base import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    PlanVersion,
    RunRecord,
    RunSummary,
    Store,
    check_cancellable,
    check_deletable,
    choose_run,
    covers_same,
    decide_approval,
    observed_status,
    settled_as_read,
    start_approval,
    withdrawn,
)
from foreman.store.memories import MemoryEntry
from foreman.tools.records import ToolCallRecord, ToolCallStatus, ToolTurnRecord


class MemoryStore(Store):
    """Runs in dictionaries. Copies go in and out, so callers cannot alias stored state."""

    durable = False

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        #: Plan versions: (the plan as JSON, its task count, what planning cost) and the
        #: version's record as JSON (reason, changes, time).
        #: Per run, each plan version: its JSON, its task ids, its usage, the version's JSON.
        self._plans: dict[str, list[tuple[str, tuple[str, ...], Usage, str]]] = {}
        self._tasks: dict[str, dict[str, str]] = {}  # task id -> the result as JSON
        # As JSON text, like the other records: strings cost the garbage collector nothing,
        # where a dict per event (and its nested dicts) were scanned on every collection.
        self._events: dict[str, list[str]] = {}
        self._approvals: dict[tuple[str, str], Approval] = {}
        self._leases: dict[str, tuple[LeaseOwner, float]] = {}
        self._cancel_requested: set[str] = set()
        #: call id -> (settled, the record as JSON)
        self._calls: dict[str, dict[str, tuple[bool, str]]] = {}
        #: memory id -> the entry as JSON (docs/memory.md), oldest first
        self._memories: dict[int, str] = {}
        self._memory_ids = 0
        #: The tool loops' journal: (task, loop, turn) -> turn, (task, seq) -> call.
        self._tool_turns: dict[str, dict[tuple[str, int, int], ToolTurnRecord]] = {}
        self._tool_calls: dict[str, dict[tuple[str, int], ToolCallRecord]] = {}

    def _run(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRunError(f"No run {run_id!r} in this memory store.") from None

    async def create_run(self, run: RunRecord) -> None:
        self._runs[run.run_id] = run.model_copy(deep=True)
        self._plans[run.run_id], self._tasks[run.run_id], self._events[run.run_id] = [], {}, []
        self._calls[run.run_id] = {}
        self._tool_turns[run.run_id], self._tool_calls[run.run_id] = {}, {}

    def _status(self, run: RunRecord) -> RunStatus:
        holder, until = self._leases.get(run.run_id, (None, None))
        return observed_status(run.status, holder, until)

    async def get_run(self, run_id: str) -> RunRecord:
        plans = self._plans.get(run_id, [])
        text, _, usage, _ = plans[-1] if plans else (None, (), Usage(), "")
        run = self._run(run_id)
        return run.model_copy(
            update={
                "plan": Plan.model_validate_json(text) if text is not None else None,
                "plan_version": len(plans),
                "plan_usage": usage.model_copy(),
                "status": self._status(run),
                **self._books(run),
            },
            deep=True,
        )

    def _books(self, run: RunRecord) -> dict[str, Any]:
        """The run's tokens, cost and call count from its ledger and its nested runs' (a
        run stored without one keeps its own usage, priced the old way)."""
        calls = [call for tree in self._tree(run.run_id) for call in self._records(tree)]
        if calls:
            return dict(Books.of(calls))  # usage, cost_usd, unpriced, calls: RunRecord's names
        tasks = self._results(run.run_id)
        price = run_price(
            run.settings.get("model"), run.usage, [(task.model, task.usage) for task in tasks]
        )
        return {"cost_usd": price.cost_usd, "unpriced": price.unpriced}

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        runs = sorted(self._runs.values(), key=lambda run: run.created_at, reverse=True)
        summaries = []
        for run in runs[:limit]:
            plans, tasks = self._plans[run.run_id], self._results(run.run_id)
            planned = set(plans[-1][1]) if plans else None  # done counts what total counts
            booked = self._books(run)
            summaries.append(
                RunSummary(
                    run_id=run.run_id,
                    request=run.request,
                    status=self._status(run),
                    tasks=len(plans[-1][1]) if plans else 0,
                    tasks_done=sum(
                        task.succeeded and (planned is None or task.task_id in planned)
                        for task in tasks
                    ),
                    usage=booked.get("usage", run.usage).model_copy(),
                    cost=booked["cost_usd"],
                    unpriced=booked["unpriced"],
                    error=run.error,
                    created_at=run.created_at,
                    updated_at=run.updated_at,
                    parent_run_id=run.parent_run_id,
                    parent_task_id=run.parent_task_id,
                )
            )
        return summaries

    def _tree(self, run_id: str) -> list[str]:
        """``run_id`` and its nested runs, at every depth."""
        tree, index = [run_id], 0
        while index < len(tree):
            parent, index = tree[index], index + 1
            tree += [r.run_id for r in self._runs.values() if r.parent_run_id == parent]
        return tree

    async def child_runs(self, run_id: str) -> list[RunSummary]:
        runs = await self.list_runs(len(self._runs))  # newest first
        return [run for run in reversed(runs) if run.parent_run_id == run_id]

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        answer: str | None = None,
        error: str | None = None,
        usage: Usage | None = None,
        events: Sequence[Any] = (),
        calls: Sequence[CallRecord] = (),
    ) -> None:
        run = self._run(run_id)
        self._put_calls(run_id, calls)
        run.status, run.answer, run.error, run.updated_at = status, answer, error, time.time()
        if usage is not None:
            run.usage = usage.model_copy()
        self._events[run_id].extend(event.model_dump_json() for event in events)
        if status is RunStatus.cancelled:
            self._withdraw_pending(run_id)

    def _withdraw_pending(self, run_id: str) -> None:
        for key, approval in self._approvals.items():
            if key[0] == run_id and approval.status is ApprovalStatus.pending:
                self._approvals[key] = withdrawn(approval)

    async def resolve_run(self, ref: str) -> str:
        if ref in self._runs:
            return ref
        newest = sorted(self._runs.values(), key=lambda run: run.created_at, reverse=True)
        top = [run for run in newest if run.parent_run_id is None]
        if ref == "last" and newest:
            return (top or newest)[0].run_id
        fits = [r.run_id for r in top if ref and r.run_id.startswith(ref)]
        if not fits:  # a prefix of a nested run's own id
            fits = [r.run_id for r in newest if ref and r.run_id.startswith(ref)]
        return choose_run(ref, fits, "this memory store")

    async def cancel_run(self, run_id: str) -> RunStatus:
        run = self._run(run_id)
        status = self._status(run)
        check_cancellable(run_id, status)
        if status is RunStatus.running:
            self._cancel_requested.add(run_id)
            return status
        run.status, run.updated_at = RunStatus.cancelled, time.time()
        self._withdraw_pending(run_id)
        return run.status

    async def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        self._run(run_id).settings = copy.deepcopy(settings)

    async def cancel_requested(self, run_id: str) -> bool:
        return run_id in self._cancel_requested

    async def delete_run(self, run_id: str, *, force: bool = False) -> None:
        check_deletable(run_id, self._status(self._run(run_id)), force)
        tables = (
            self._runs, self._plans, self._tasks, self._events, self._leases, self._calls,
            self._tool_turns, self._tool_calls,
        )  # fmt: skip
        for tree in self._tree(run_id):
            for table in tables:
                table.pop(tree, None)
            self._cancel_requested.discard(tree)
            for key in [key for key in self._approvals if key[0] == tree]:
                del self._approvals[key]

    async def save_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> int:
        return self._add_plan(run_id, plan, usage, calls, None, PlanChanges())

    async def save_revision(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
        *,
        reason: str,
        changes: PlanChanges,
    ) -> int:
        return self._add_plan(run_id, plan, usage, calls, reason, changes)

    def _add_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None,
        calls: Sequence[CallRecord],
        reason: str | None,
        changes: PlanChanges,
    ) -> int:
        self._run(run_id)
        self._put_calls(run_id, calls)
        plans = self._plans[run_id]
        usage = (usage or Usage()).model_copy()
        version = PlanVersion(
            version=len(plans) + 1, plan=plan, reason=reason, changes=changes, usage=usage
        )
        ids = tuple(task.id for task in plan.tasks)
        plans.append((plan.model_dump_json(), ids, usage, version.model_dump_json()))
        return version.version

    async def list_plans(self, run_id: str) -> list[PlanVersion]:
        self._run(run_id)
        return [PlanVersion.model_validate_json(entry[3]) for entry in self._plans[run_id]]

    async def save_task(
        self,
        run_id: str,
        result: TaskResult,
        events: Sequence[Any] = (),
        calls: Sequence[CallRecord] = (),
    ) -> None:
        await self.save_checkpoints(run_id, [Checkpoint(result, events)], calls)

    async def save_checkpoints(
        self,
        run_id: str,
        checkpoints: Sequence[Checkpoint],
        calls: Sequence[CallRecord] = (),
    ) -> None:
        self._run(run_id)
        tasks, log = self._tasks[run_id], self._events[run_id]
        for checkpoint in checkpoints:
            tasks[checkpoint.result.task_id] = checkpoint.result.model_dump_json()
            log.extend(event.model_dump_json() for event in checkpoint.events)
        self._put_calls(run_id, calls)

    async def save_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        self._run(run_id)
        self._put_calls(run_id, calls)

    def _put_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        stored = self._calls[run_id]
        for call in calls:
            known = stored.get(call.call_id)
            settled = call.status.settled
            if known is None or not known[0] or settled:
                stored[call.call_id] = (settled, call.model_dump_json())

    def _records(self, run_id: str) -> list[CallRecord]:
        return [CallRecord.model_validate_json(text) for _, text in self._calls[run_id].values()]

    def _results(self, run_id: str) -> list[TaskResult]:
        return [TaskResult.model_validate_json(text) for text in self._tasks[run_id].values()]

    async def list_calls(
        self,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        with_prompts: bool = False,
        descendants: bool = False,
    ) -> list[CallRecord]:
        if run_id is None:
            runs = list(self._calls)
        else:
            runs = self._tree(run_id) if descendants and run_id in self._runs else [run_id]
        found = []
        for run in runs:
            if run not in self._calls:
                continue
            status = self._status(self._runs[run])
            for call in self._records(run):
                if task_id is not None and call.task_id != task_id:
                    continue
                if (since is not None and call.started_at < since) or (
                    until is not None and call.started_at >= until
                ):
                    continue
                if not with_prompts:
                    call.prompt = call.output = None
                found.append(settled_as_read(call, status))
        return sorted(found, key=lambda call: call.started_at)

    async def load_tasks(self, run_id: str) -> dict[str, TaskResult]:
        stored = self._tasks.get(run_id, {})
        return {k: TaskResult.model_validate_json(text) for k, text in stored.items()}

    async def load_events(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self._events.get(run_id, [])]

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        self._run(run_id)
        holder, until = self._leases.get(run_id, (None, 0.0))
        if holder is not None and holder.id != owner.id and until > time.time():
            raise RunLockedError(f"Run {run_id} is being executed by another task right now.")
        self._leases[run_id] = (owner, time.time() + ttl)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        holder, _ = self._leases.get(run_id, (None, 0.0))
        if holder is not None and holder.id == owner.id:
            self._leases[run_id] = (owner, time.time() + ttl)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        holder, _ = self._leases.get(run_id, (None, 0.0))
        if holder is not None and holder.id == owner.id:
            # The holder stays on record: a run it left ``running`` then reads ``crashed``.
            self._leases[run_id] = (holder, 0.0)

    async def request_approval(self, approval: Approval) -> Approval:
        self._run(approval.run_id)
        key = (approval.run_id, approval.task_id)
        existing = self._approvals.get(key)
        if not covers_same(existing, approval):
            self._approvals[key] = existing = approval.model_copy()
        return existing.model_copy()

    async def get_approval(self, run_id: str, task_id: str) -> Approval | None:
        approval = self._approvals.get((run_id, task_id))
        return approval.model_copy() if approval else None

    async def list_approvals(
        self, status: ApprovalStatus | None = ApprovalStatus.pending
    ) -> list[Approval]:
        found = [a for a in self._approvals.values() if status is None or a.status is status]
        return sorted((a.model_copy() for a in found), key=lambda a: a.requested_at)

    async def decide(
        self, run_id: str, task_id: str, *, approved: bool, note: str | None
    ) -> Approval:
        current = self._approvals.get((run_id, task_id))
        decided = decide_approval(current, run_id, task_id, approved, note)
        self._run(run_id)
        self._approvals[(run_id, task_id)] = decided
        return decided.model_copy()

    async def start_approved(self, run_id: str, task_id: str) -> Approval:
        self._run(run_id)
        started = start_approval(self._approvals.get((run_id, task_id)), run_id, task_id)
        self._approvals[(run_id, task_id)] = started
        return started.model_copy()

    # tool loops
    async def save_tool_turn(
        self, record: ToolTurnRecord, calls: Sequence[CallRecord] = ()
    ) -> None:
        self._run(record.run_id)
        key = (record.task_id, record.loop, record.turn)
        self._tool_turns[record.run_id][key] = record.model_copy(deep=True)
        self._put_calls(record.run_id, calls)

    async def save_tool_call(self, record: ToolCallRecord) -> None:
        self._run(record.run_id)
        calls = self._tool_calls[record.run_id]
        key = (record.task_id, record.seq)
        existing = calls.get(key)
        if existing is None or existing.status is not ToolCallStatus.finished:
            calls[key] = record.model_copy(deep=True)

    async def list_tool_turns(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolTurnRecord]:
        turns = self._tool_turns.get(run_id, {})
        return [
            turns[key].model_copy(deep=True)
            for key in sorted(turns)
            if task_id is None or key[0] == task_id
        ]

    async def list_tool_calls(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolCallRecord]:
        calls = [
            record.model_copy(deep=True)
            for record in self._tool_calls.get(run_id, {}).values()
            if task_id is None or record.task_id == task_id
        ]
        return sorted(calls, key=lambda record: (record.started_at, record.task_id, record.seq))

    # --- memory ------------------------------------------------------------------------

    async def add_memory(self, entry: MemoryEntry, *, limit: int | None = None) -> int:
        self._memory_ids += 1
        stored = entry.model_copy(update={"memory_id": self._memory_ids})
        self._memories[self._memory_ids] = stored.model_dump_json()
        while limit is not None and len(self._memories) > limit:
            del self._memories[next(iter(self._memories))]
        return self._memory_ids

    async def list_memories(
        self, *, run_id: str | None = None, embedder: str | None = None, limit: int | None = None
    ) -> list[MemoryEntry]:
        entries = [MemoryEntry.model_validate_json(j) for j in reversed(self._memories.values())]
        if run_id is not None:
            entries = [e for e in entries if e.run_id == run_id]
        if embedder is not None:
            entries = [e for e in entries if e.embedder == embedder]
        return entries[:limit] if limit is not None else entries

    async def delete_memory(self, memory_id: int) -> bool:
        return self._memories.pop(memory_id, None) is not None

    async def clear_memories(self, *, run_id: str | None = None) -> int:
        gone = [i for i, e in self._memories.items() if run_id is None or _run_of(e) == run_id]
        for memory_id in gone:
            del self._memories[memory_id]
        return len(gone)


def _run_of(entry_json: str) -> str:
    return MemoryEntry.model_validate_json(entry_json).run_id
