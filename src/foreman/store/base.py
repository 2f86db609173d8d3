"""The run store: a small async interface, and the records it keeps.

Persistence is a delta log, never a snapshot: a run row, its plan versions, one row per
task written when that task settles, events, and approvals. Storage therefore grows
linearly with the number of tasks, and a crash loses at most the tasks still running.
Every implementation must pass the conformance suite,
``foreman.testing.store_conformance.StoreConformance`` (docs/stores.md: write your own store).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from foreman.errors import StoreError
from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.store.memories import MemoryEntry, MemoryHit, best_matches
from foreman.store.records import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    PlanVersion,
    RunRecord,
    RunSummary,
)
from foreman.store.rules import (
    check_cancellable,
    check_deletable,
    choose_run,
    covers_same,
    decide_approval,
    described,
    observed_status,
    reading_run,
    settled_as_read,
    start_approval,
    withdrawn,
)
from foreman.tools.records import ToolCallRecord, ToolTurnRecord

__all__ = [
    "Approval",
    "ApprovalStatus",
    "Checkpoint",
    "LeaseOwner",
    "MemoryEntry",
    "MemoryHit",
    "PlanVersion",
    "RunRecord",
    "RunSummary",
    "Store",
    "check_cancellable",
    "check_deletable",
    "choose_run",
    "covers_same",
    "decide_approval",
    "described",
    "observed_status",
    "reading_run",
    "settled_as_read",
    "start_approval",
    "withdrawn",
]


class Store(ABC):
    """Where runs, plans, task results, events and approvals live.

    Writes that belong together (a task's result and the events leading to it) are one
    atomic call, so a reader never sees half a checkpoint.
    """

    #: Whether what the store keeps outlives the process. A call in flight is written
    #: as it starts only to a durable store: the row exists so that a crash cannot hide
    #: the call's tokens, and a crash takes a store in memory with it anyway.
    durable: ClassVar[bool] = True

    # runs
    @abstractmethod
    async def create_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """The run with its latest plan; ``UnknownRunError`` if there is none. Its books
        (usage, cost, calls) sum its ledger and its nested runs' (``docs/books.md``)."""

    @abstractmethod
    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""

    @abstractmethod
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
        """Set the run's status (and answer, error), with the events and ledger records
        that lead to it, in one write. A run's tokens and cost are the sum of its ledger;
        ``usage`` only counts for a run that has no ledger (stored before there was one)."""

    async def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        """Replace the run's recorded settings (what ``resume`` rebuilds it from): a budget
        raised on ``resume`` stays the run's budget. Raises ``UnknownRunError``.

        A store written before this method existed keeps this default, which says it
        cannot: ``resume`` then applies a raised budget to its own execution only."""
        raise NotImplementedError(f"{type(self).__name__} cannot update a run's settings.")

    @abstractmethod
    async def resolve_run(self, ref: str) -> str:
        """The id of the run ``ref`` names: a full id, a unique prefix, or ``last`` (newest).
        ``last`` and a prefix name top-level runs first (a nested run's id starts with its
        parent's): a prefix names a nested run only when it fits no top-level one.

        ``AmbiguousRunError`` (listing the candidates) when a prefix fits several runs,
        ``UnknownRunError`` when it fits none.
        """

    @abstractmethod
    async def cancel_run(self, run_id: str) -> RunStatus:
        """Cancel a run that has not finished; ``cancelled`` is final (resume refuses it).

        A run executing in a live process cannot be stopped from here: it is flagged, its
        process notices (``cancel_requested``), stops and records ``cancelled`` itself;
        ``running`` is returned. Any other unfinished run (paused, interrupted, crashed...)
        is marked ``cancelled`` at once and that is returned. ``RunFinishedError`` if the run
        already finished or was cancelled.
        """

    @abstractmethod
    async def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked this run to stop (polled by the process executing it)."""

    @abstractmethod
    async def delete_run(self, run_id: str, *, force: bool = False) -> None:
        """Delete a run and everything stored about it (plans, tasks, events, approvals,
        and its nested runs).

        ``RunLockedError`` if a live process is executing it, unless ``force``.
        """

    # plans and tasks
    @abstractmethod
    async def save_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> int:
        """Store a new plan version, what planning it cost and the ledger records so far;
        returns its number (1, 2...)."""

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
        """Store a revised plan as the next version, with why it was revised and what
        changed (``list_plans`` returns them); returns its number.

        A store written before revisions existed keeps this default: the plan is stored
        as a version (resume continues from it), without its reason and changes."""
        return await self.save_plan(run_id, plan, usage, calls)

    async def list_plans(self, run_id: str) -> list[PlanVersion]:
        """Every version of the run's plan, oldest first (``UnknownRunError`` if there is
        no such run). This default, for a store written before revisions existed, knows
        only the latest version."""
        run = await self.get_run(run_id)
        if run.plan is None:
            return []
        return [PlanVersion(version=run.plan_version, plan=run.plan, usage=run.plan_usage)]

    @abstractmethod
    async def save_task(
        self,
        run_id: str,
        result: TaskResult,
        events: Sequence[Any] = (),
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Checkpoint one settled task (and the events and ledger records before it)
        atomically."""

    async def save_checkpoints(
        self,
        run_id: str,
        checkpoints: Sequence[Checkpoint],
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Checkpoint tasks that settled together, with the ledger records so far.

        The engine groups what settles while a write is in flight into one call, so a wide
        fan-out costs a few writes, not one per task. Checkpoints are in the order they
        settled; each one's events come before the next one's. The built-in stores write
        the whole group in one transaction. This default, for a store that only has
        ``save_task``, writes the checkpoints one by one (the ledger records with the
        first): a failure can then leave the earlier ones stored, and the engine fails the
        whole group anyway, which only costs those tasks a rerun on resume.
        """
        if not checkpoints:
            if calls:
                await self.save_calls(run_id, calls)
            return
        for index, checkpoint in enumerate(checkpoints):
            await self.save_task(
                run_id, checkpoint.result, checkpoint.events, calls=() if index else calls
            )

    # the call ledger
    @abstractmethod
    async def save_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        """Write ledger records, replacing earlier versions of the same ``call_id``; a
        settled record is never replaced by a ``started`` one (writes may arrive late)."""

    @abstractmethod
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
        """Ledger records, oldest first: of one run (and task) or of every run, started in
        ``[since, until)``. ``with_prompts=False`` leaves prompt and output out (stats).
        A ``started`` record of a run no live process is executing reads ``interrupted``:
        its process died during the call. ``descendants=True`` (with ``run_id``) adds the
        records of the run's nested runs, at every depth: the rows its books sum."""

    async def child_runs(self, run_id: str) -> list[RunSummary]:
        """The nested runs whose ``parent_run_id`` is ``run_id``, oldest first.

        This default scans every run (what a store written before nesting gets); the
        built-in stores answer from an index."""
        children = [run for run in await self.list_runs(2**31) if run.parent_run_id == run_id]
        return sorted(children, key=lambda run: run.created_at)

    async def recent_calls(self, per_group: int) -> list[CallRecord]:
        """The newest ``per_group`` ledger records of each (purpose, worker, model), of
        every run, oldest first, without prompts: what ``foreman plan`` estimates from.

        Bounded so that a store with a long history answers as fast as a young one. This
        default reads the whole ledger (correct, and what a store written before this
        method existed gets); a store overrides it with an indexed query."""
        groups: dict[tuple[str, str | None, str], list[CallRecord]] = {}
        for record in await self.list_calls():
            groups.setdefault((record.purpose.value, record.worker, record.model), []).append(
                record
            )
        newest = [record for calls in groups.values() for record in calls[-per_group:]]
        return sorted(newest, key=lambda record: record.started_at)

    @abstractmethod
    async def load_tasks(self, run_id: str) -> dict[str, TaskResult]: ...

    @abstractmethod
    async def load_events(self, run_id: str) -> list[dict[str, Any]]:
        """Events as stored (JSON objects), in order."""

    # leases
    @abstractmethod
    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        """Take the run for ``owner``; ``RunLockedError`` if a live owner holds it."""

    @abstractmethod
    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None: ...

    @abstractmethod
    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None: ...

    # approvals
    @abstractmethod
    async def request_approval(self, approval: Approval) -> Approval:
        """Record a pending request and return the one that stands.

        Idempotent for the same inputs and tool: an existing request (pending or decided) is
        returned as it is. A decision covers only the inputs that were shown, for the tool
        they were shown for, so a request with other inputs (a dependency ran again and
        changed them) or another tool replaces it, pending again (``covers_same``).
        """

    @abstractmethod
    async def get_approval(self, run_id: str, task_id: str) -> Approval | None: ...

    @abstractmethod
    async def list_approvals(
        self, status: ApprovalStatus | None = ApprovalStatus.pending
    ) -> list[Approval]: ...

    @abstractmethod
    async def decide(
        self, run_id: str, task_id: str, *, approved: bool, note: str | None
    ) -> Approval:
        """Approve or reject a pending request; ``ApprovalError`` if there is none pending."""

    async def change_marker(self) -> Hashable:
        """A value that differs whenever something stored changed, whichever process wrote
        it: what a live view (``foreman ui``) polls to know when to read again.

        This default fingerprints the runs (status, progress, books) and the approvals:
        correct for any store, and enough for one in memory. A store with a cheaper
        signal (SQLite's ``data_version``) overrides it."""
        runs = await self.list_runs(2**31)
        approvals = await self.list_approvals(None)
        return (
            tuple(run.model_dump_json() for run in runs),
            tuple(approval.model_dump_json() for approval in approvals),
        )

    # --- memory (docs/memory.md) ------------------------------------------------------

    async def add_memory(self, entry: MemoryEntry, *, limit: int | None = None) -> int:
        """Keep ``entry``; its new ``memory_id`` (ids only grow). With ``limit``, the
        oldest entries go until at most ``limit`` remain."""
        raise StoreError(f"{type(self).__name__} keeps no memory; use SQLiteStore.")

    async def list_memories(
        self, *, run_id: str | None = None, embedder: str | None = None, limit: int | None = None
    ) -> list[MemoryEntry]:
        """Entries, newest first: all, or one run's, or one embedder's; at most ``limit``."""
        raise StoreError(f"{type(self).__name__} keeps no memory; use SQLiteStore.")

    async def delete_memory(self, memory_id: int) -> bool:
        """Forget one entry; False when there was none with that id."""
        raise StoreError(f"{type(self).__name__} keeps no memory; use SQLiteStore.")

    async def clear_memories(self, *, run_id: str | None = None) -> int:
        """Forget every entry (or one run's); how many were forgotten."""
        raise StoreError(f"{type(self).__name__} keeps no memory; use SQLiteStore.")

    async def search_memories(
        self,
        vector: Sequence[float],
        *,
        embedder: str,
        top_k: int,
        min_score: float = -1.0,
        run_id: str | None = None,
    ) -> list[MemoryHit]:
        """The ``top_k`` entries of ``embedder`` most similar to ``vector``, best first.

        Reads the entries and compares them here: a store's size limit keeps that a
        small matrix product. A store with a vector index may override it."""
        entries = await self.list_memories(run_id=run_id, embedder=embedder)
        return best_matches(entries, list(vector), top_k, min_score)

    async def aclose(self) -> None:  # noqa: B027 - stores without resources need nothing
        """Release files and threads; safe to call more than once."""

    # tool loops: optional (``supports_tool_journal``); the built-in stores have them
    async def save_tool_turn(
        self, record: ToolTurnRecord, calls: Sequence[CallRecord] = ()
    ) -> None:
        """Store an answered model turn of a task's tool loop (replacing the same turn),
        with the ledger records so far, in one write: a crash after it loses neither."""
        raise NotImplementedError(f"{type(self).__name__} keeps no tool journal.")

    async def save_tool_call(self, record: ToolCallRecord) -> None:
        """Store a tool call durably: ``started`` before the tool runs, then ``finished``
        (replacing it). A finished call is final: a later write of it changes nothing."""
        raise NotImplementedError(f"{type(self).__name__} keeps no tool journal.")

    async def list_tool_turns(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolTurnRecord]:
        """The stored turns of a run's (or one task's) tool loops, by task, loop, turn."""
        return []

    async def list_tool_calls(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolCallRecord]:
        """The tool calls of a run (or one task), oldest first: tool, arguments, outcome,
        latency and result, the ledger of what workers did."""
        return []

    @property
    def supports_tool_journal(self) -> bool:
        """Whether this store checkpoints tool loops (a store written before they existed
        does not: its runs' tool calls are then not protected across a crash)."""
        return type(self).save_tool_call is not Store.save_tool_call

    # approved executions
    @abstractmethod
    async def start_approved(self, run_id: str, task_id: str) -> Approval:
        """Record, durably and before the worker is called, that an approved task starts.

        An approval covers one execution. Returned approved with ``started_at`` set; but if
        an approved execution had already started (the process died during it, or it
        failed), the approval is used up: it is returned pending again, with
        ``may_have_run``, and must be decided anew. ``ApprovalError`` if the task has no
        approved (or used-up) approval.
        """
