"""For-each tasks at run time: N items in a dependency's output become N parallel tasks,
with no model call (``foreman.plan.foreach`` has the reference syntax and the ids).

The moment the dependency a for-each task iterates over settles (its checkpoint stored),
the task's items are added to the running DAG as tasks of their own, ``t3.1``, ``t3.2``...:
each with the task's worker, instructions and dependencies, its item as the input ``item``
instead of the whole list, and everything a task has (limits, approval by risk,
checkpoint, ledger rows under ``task:t3.2``, events). The for-each task stays in the DAG
as their join: it now depends on its items, so its dependants wait for all of them, and it
settles, with no model call, as the list of their outputs in item order.

How items combine: every item succeeded, the task succeeded with their outputs; some did
not, it still succeeded, with a missing-input marker in place of each of those (listed in
``missing_inputs``) so dependants keep the rest, and the run ends ``partial``; none did,
it failed (or was skipped, if they all were). An item that fails under its worker's
``abort`` policy aborts the run like any task. An empty list succeeds with ``[]``; a
dependency that did not succeed skips the task; an output with no list where the
reference points fails it, with the reason (its worker's failure policy applies).

Expansion is a pure function of the stored dependency output: a resumed run expands the
same items again, and those already stored are not run again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from foreman.engine.delivery import Delivery
from foreman.engine.scheduler import DagRun, ExecuteTask
from foreman.errors import RunAbortedError
from foreman.events import TaskExpanded, TaskFailed, TaskFinished, TaskSkipped
from foreman.plan.foreach import ITEM_INPUT, item_id, item_task, items_at, split_ref
from foreman.plan.schema import Task
from foreman.results import TaskResult, TaskStatus
from foreman.workers.registry import Registry


@dataclass(frozen=True)
class _Item:
    source: str  # the dependency whose output holds the list
    value: Any
    missing: str | None = None  # why there is no item: it did not succeed upstream


class ForEach:
    """Expands a run's for-each tasks inside its ``DagRun``: ``wrap`` the execute function
    the DAG runs, then ``attach`` the DAG (which expands what earlier executions made
    possible) before waiting on it."""

    def __init__(self, run_id: str, delivery: Delivery, registry: Registry) -> None:
        self.run_id = run_id
        self.delivery = delivery
        self.registry = registry
        self._dag: DagRun | None = None
        self._joins: dict[str, list[str]] = {}  # expanded for-each task -> its item ids
        self._items: dict[str, _Item] = {}
        self._scanned: tuple[int, int] = (-1, -1)  # (DAG revision, joins) of the last scan
        self._found: list[tuple[Task, tuple[str, list[str]]]] = []

    def attach(self, dag: DagRun) -> None:
        """Expand, now, each for-each task whose dependency settled in an earlier execution."""
        self._dag = dag
        self.grown(dag.results)

    def grown(self, results: Mapping[str, TaskResult]) -> None:
        """Expand each pending for-each task whose dependency is among ``results``: at
        ``attach``, and when a revision added tasks over results it was considering."""
        assert self._dag is not None, "attach the DAG before it grows"
        sources = {ref[0] for _, ref in self._pending(self._dag)}
        for source in sources & results.keys():
            self._expand_over(source, results[source])

    def wrap(self, execute: ExecuteTask) -> ExecuteTask:
        """``execute``, with item tasks given their item and joins settled from their
        items. A plain task goes straight to ``execute`` (no coroutine of its own: in a
        wide fan-out every task's start delays all after it); its for-each dependants are
        expanded by ``stored``, which ``execute`` calls once its result is stored."""

        def run(task: Task, deps: dict[str, TaskResult]) -> Awaitable[TaskResult]:
            if task.id in self._joins:
                return self._join(task, deps)
            if (item := self._items.get(task.id)) is not None:
                if item.missing is not None:
                    return self._settle(task, TaskStatus.skipped, item.missing)
                given = deps[item.source].model_copy(update={"output": item.value})
                others = {dep: res for dep, res in deps.items() if dep != item.source}
                return execute(task, {ITEM_INPUT: given, **others})
            if task.for_each:
                return self._unexpanded(task, deps)
            return execute(task, deps)

        return run

    def stored(self, result: TaskResult) -> None:
        """A task's result is checkpointed: expand the for-each tasks over its output
        (an item's output is never iterated over)."""
        if result.succeeded and result.task_id not in self._items:
            self._expand_over(result.task_id, result)

    # --- expansion ------------------------------------------------------------------

    def _expand_over(self, source: str, result: TaskResult) -> None:
        """Expand the pending for-each tasks that iterate over ``source``'s output."""
        dag = self._dag
        assert dag is not None, "attach the DAG before it runs"
        if not result.succeeded:
            return
        for task, (over, path) in self._pending(dag):
            if over != source or dag.state(task.id) != "pending":
                continue  # another source's; or settled, or held behind an approval
            try:
                items = items_at(result.output, path, task.for_each or "")
            except ValueError:
                continue  # the task runs unexpanded and fails with the reason
            ids = [item_id(task.id, index) for index in range(len(items))]
            missed = _missed_items(source, result) if not path else set()
            for index, value in enumerate(items):
                upstream = item_id(source, index)
                reason = _missing_reason(upstream, value) if upstream in missed else None
                self._items[ids[index]] = _Item(source, value, reason)
            self._joins[task.id] = ids
            dag.add([item_task(task, index) for index in range(len(items))])
            dag.change(task.model_copy(update={"depends_on": ids}))
            self.delivery.emit(
                TaskExpanded(run_id=self.run_id, task_id=task.id, count=len(ids), item_ids=ids)
            )

    def _pending(self, dag: DagRun) -> list[tuple[Task, tuple[str, list[str]]]]:
        """The DAG's for-each tasks not expanded yet, with their references. Scanned again
        only when the DAG changed shape (a revision added tasks, an expansion happened):
        a scan per settled task would make a wide plan quadratic."""
        if self._scanned == (dag.revision, len(self._joins)):
            return self._found
        found = []
        for task in dag.tasks:
            if task.for_each and task.id not in self._joins:
                ref = split_ref(task.for_each, task.depends_on)
                if ref is not None:
                    found.append((task, ref))
        self._scanned, self._found = (dag.revision, len(self._joins)), found
        return found

    async def _join(self, task: Task, deps: dict[str, TaskResult]) -> TaskResult:
        """The for-each task's own result: its items' outputs, in item order."""
        ids = self._joins[task.id]
        items = [deps[item] for item in ids]
        missed = [item for item in items if not item.succeeded]
        outputs = [item.output if item.succeeded else _missing(item) for item in items]
        if items and len(missed) == len(items):
            status = (
                TaskStatus.skipped
                if all(item.status is TaskStatus.skipped for item in missed)
                else TaskStatus.failed
            )
            reasons = "; ".join(f"{item.task_id}: {item.error}" for item in missed[:3])
            error = f"none of its {len(items)} items succeeded ({reasons})"
            return await self._settle(task, status, error, output=outputs)
        result = TaskResult(
            task_id=task.id,
            worker=task.worker,
            status=TaskStatus.succeeded,
            output=outputs,
            model=None,
            missing_inputs=[item.task_id for item in missed],
        )
        self.delivery.emit(TaskFinished.of(self.run_id, result))
        await self.delivery.checkpoint(result)
        self._expand_over(task.id, result)  # a for-each task may iterate over this list
        return result

    async def _unexpanded(self, task: Task, deps: dict[str, TaskResult]) -> TaskResult:
        """A for-each task that could not expand: its dependency did not succeed (skipped),
        or its output has no list where the reference points (failed)."""
        ref = split_ref(task.for_each or "", task.depends_on)
        assert ref is not None, "validation checks every for_each names a dependency"
        source, path = ref
        if not deps[source].succeeded:
            reason = f"its items come from {source}, which {deps[source].status.value}"
            return await self._settle(task, TaskStatus.skipped, reason)
        try:
            items_at(deps[source].output, path, task.for_each or "")
        except ValueError as exc:
            return await self._settle(task, TaskStatus.failed, str(exc))
        # The list is there, so the task was not pending when its dependency settled: the
        # plan was revised under it. Its items never ran; say so rather than guess.
        error = f"for_each {task.for_each!r}: the task changed after its items were known"
        return await self._settle(task, TaskStatus.failed, error)

    async def _settle(
        self, task: Task, status: TaskStatus, error: str, *, output: Any = None
    ) -> TaskResult:
        """Store a for-each task that did not succeed, with its event; a failure under an
        ``abort`` policy aborts the run, as any task's would."""
        result = TaskResult(
            task_id=task.id, worker=task.worker, status=status, error=error, output=output
        )
        if status is TaskStatus.skipped:
            self.delivery.emit(TaskSkipped(run_id=self.run_id, task_id=task.id, reason=error))
            await self.delivery.checkpoint(result)
            return result
        policy = self.registry.get(task.worker).on_failure
        self.delivery.emit(
            TaskFailed(
                run_id=self.run_id, task_id=task.id, worker=task.worker, error=error, policy=policy
            )
        )
        await self.delivery.checkpoint(result)
        if policy == "abort":
            raise RunAbortedError(task.id, error, result=result)
        return result


def _missed_items(source: str, result: TaskResult) -> set[str]:
    """The items of ``source``, a for-each task, that did not succeed: in its list they are
    markers, which a for-each task over that list skips rather than works on."""
    return {task_id for task_id in result.missing_inputs if task_id.startswith(source + ".")}


def _missing_reason(upstream: str, marker: Any) -> str:
    said = marker.get("reason") if isinstance(marker, dict) else None
    return f"its item is missing: {said or f'item {upstream} did not succeed'}"


def _missing(item: TaskResult) -> dict[str, Any]:
    """What stands in a for-each task's list for an item that did not succeed: the marker
    a task gets for a missing input."""
    return {"missing": True, "reason": f"item {item.task_id} {item.status.value}: {item.error}"}
