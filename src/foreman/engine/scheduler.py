"""Event-driven DAG scheduling: a task starts the moment its last dependency finishes.

There are no levels or rounds. Each finished task decrements its dependants' counters and
starts those that reach zero, so one slow branch never holds back an unrelated one. The
bookkeeping is O(1) per edge, which keeps the engine's own cost per task in microseconds.

The DAG may grow while it runs (``DagRun.add``, ``change``, ``drop``): replanning adds
tasks as workers report, and a task that runs once per item of its input becomes as many
tasks as there are items. New tasks start at once when their inputs exist; settled and
running tasks are never touched. ``hold`` keeps the run open while a caller decides what
to add, so the run cannot end under a revision in progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager

from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus


class Halt(Exception):
    """Raised by ``execute`` to end the DAG early without failing it (a budget ran out):
    the task that raised it stays unfinished, no task starts after it, the tasks still
    running end on their own, and the run returns what finished."""


ExecuteTask = Callable[[Task, dict[str, TaskResult]], Awaitable[TaskResult]]


async def run_dag(
    plan: Plan,
    execute: ExecuteTask,
    *,
    concurrency: int | None = None,
    worker_limits: Mapping[str, int] | None = None,
    results: dict[str, TaskResult] | None = None,
) -> dict[str, TaskResult]:
    """Run every task of ``plan`` through ``execute`` as soon as its inputs exist; see
    ``DagRun`` (this is a DAG that never grows)."""
    dag = DagRun(
        plan.tasks,
        execute,
        concurrency=concurrency,
        worker_limits=worker_limits,
        results=results,
    )
    return await dag.wait()


class DagRun:
    """One run of a DAG of tasks, which may grow while it runs.

    ``execute`` gets the task and the results of its dependencies. ``results`` is filled
    in place as tasks finish, so a caller keeps what was done even if the run fails; tasks
    already in it (from an earlier, interrupted execution) are not run again. An exception
    from ``execute`` cancels every running task and propagates from ``wait``, except
    ``Halt``, which lets them finish. A task whose result is ``waiting`` (for approval)
    holds back everything downstream of it; the rest goes on.
    """

    def __init__(
        self,
        tasks: Iterable[Task],
        execute: ExecuteTask,
        *,
        concurrency: int | None = None,
        worker_limits: Mapping[str, int] | None = None,
        results: dict[str, TaskResult] | None = None,
    ) -> None:
        self.results: dict[str, TaskResult] = {} if results is None else results
        self._execute = execute
        self._global = asyncio.Semaphore(concurrency) if concurrency else None
        self._worker_limit = {
            name: asyncio.Semaphore(n) for name, n in (worker_limits or {}).items()
        }
        # The slots a task of each worker takes, its worker's own first (waiting for it
        # holds no global slot); worked out once per worker, not per task.
        self._limits: dict[str, list[asyncio.Semaphore]] = {}
        self._tasks: dict[str, Task] = {}
        self._dependants: dict[str, list[str]] = {}
        self._waiting_on: dict[str, int] = {}  # pending task -> inputs not settled yet
        self._running: dict[str, asyncio.Task[None]] = {}  # by task id, until it ends
        self._started: set[str] = set()
        self._held: set[str] = set()
        self._unfinished = 0
        self._active = 0  # tasks started and not ended
        self._holds = 0
        self._paused = 0
        self._halted = False
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._begun = False
        #: Counts the changes to the DAG's shape (tasks added, changed, dropped), so a
        #: caller can cache what it derives from ``tasks``.
        self.revision = 0
        self._add(list(tasks))

    # --- the caller's view ----------------------------------------------------------

    async def wait(self) -> dict[str, TaskResult]:
        """Start what is ready and return the results once every task settled (or the run
        halted), and no ``hold`` is open."""
        self._begun = True
        for task_id, count in list(self._waiting_on.items()):
            if count == 0:
                self._start(task_id)
        self._check_done()
        try:
            await self._done
        finally:
            running = list(self._running.values())
            for handle in running:
                handle.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return self.results

    def add(self, tasks: Iterable[Task]) -> None:
        """Run ``tasks`` too; each may depend on any known task or on another of them.
        Those whose inputs exist start now."""
        added = self._add(list(tasks))
        if self._begun:
            for task_id in added:
                if self._waiting_on.get(task_id) == 0:
                    self._start(task_id)

    def change(self, task: Task) -> None:
        """Replace a pending task (same id): new instructions, worker or inputs. The
        caller keeps the DAG acyclic (``foreman.plan.validate`` checks revisions)."""
        self._check_pending(task.id, "changed")
        self._unlink(task.id)
        del self._tasks[task.id]
        self._unfinished -= 1
        self.add([task])

    def drop(self, task_ids: Iterable[str]) -> None:
        """Never run these pending tasks. None of the tasks that stay may depend on them."""
        ids = set(task_ids)
        for task_id in ids:
            self._check_pending(task_id, "dropped")
            needed = [d for d in self._dependants[task_id] if d not in ids]
            if needed:
                raise ValueError(f"task {task_id!r} cannot be dropped: {needed} depend on it")
        for task_id in ids:
            self._unlink(task_id)
        self.revision += 1
        for task_id in ids:
            del self._tasks[task_id], self._dependants[task_id]
            self._unfinished -= 1
        self._check_done()

    def state(self, task_id: str) -> str:
        """``settled``, ``running``, ``pending`` or ``held`` (downstream of a wait)."""
        if task_id in self.results:
            return "settled"
        if task_id in self._held:
            return "held"
        if task_id in self._started:
            return "running"
        if task_id in self._tasks:
            return "pending"
        raise KeyError(task_id)

    @property
    def tasks(self) -> list[Task]:
        """Every task the run knows, in the order they were added."""
        return list(self._tasks.values())

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the run open (it does not end, even with every task settled) until the
        block ends: a revision in progress may still add tasks."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            self._check_done()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Start no task until the block ends, then every task that is ready: a caller
        that changes the DAG in steps (a revision, then the for-each expansions it allows)
        never has a task start half-way."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if not self._paused and self._begun:
                for task_id, count in list(self._waiting_on.items()):
                    if count == 0:
                        self._start(task_id)

    # --- bookkeeping ----------------------------------------------------------------

    def _add(self, tasks: list[Task]) -> list[str]:
        for task in tasks:
            if task.id in self._tasks:
                raise ValueError(f"task {task.id!r} is already in the run")
        known = self._tasks.keys() | {task.id for task in tasks}
        for task in tasks:
            missing = [dep for dep in task.depends_on if dep not in known]
            if missing:
                raise ValueError(f"task {task.id!r} depends on unknown tasks {missing}")
        added = []
        self.revision += 1
        for task in tasks:
            self._tasks[task.id] = task
            self._dependants.setdefault(task.id, [])
            for dep in task.depends_on:
                self._dependants.setdefault(dep, []).append(task.id)
            if task.worker not in self._limits:
                own = self._worker_limit.get(task.worker)
                self._limits[task.worker] = [x for x in (own, self._global) if x is not None]
        results = self.results
        for task in tasks:
            if task.id in results:
                continue
            if any(
                dep in self._held or (dep in results and results[dep].status is TaskStatus.waiting)
                for dep in task.depends_on
            ):
                self._held.add(task.id)  # downstream of a task waiting for approval
                continue
            self._waiting_on[task.id] = sum(dep not in results for dep in task.depends_on)
            self._unfinished += 1
            added.append(task.id)
        return added

    def _check_pending(self, task_id: str, what: str) -> None:
        if self.state(task_id) != "pending":
            raise ValueError(f"task {task_id!r} is {self.state(task_id)} and cannot be {what}")

    def _unlink(self, task_id: str) -> None:
        for dep in self._tasks[task_id].depends_on:
            self._dependants[dep].remove(task_id)
        self._waiting_on.pop(task_id, None)

    def _start(self, task_id: str) -> None:
        if self._halted or self._paused:  # paused: started when the pause ends
            return
        self._active += 1
        self._started.add(task_id)
        del self._waiting_on[task_id]
        # No done callback to forget the handle: ``_run_one`` does (a callback copies the
        # context and binds a method, per task, in every burst of starts).
        self._running[task_id] = asyncio.get_running_loop().create_task(
            self._run_one(self._tasks[task_id]), name=f"foreman-task-{task_id}"
        )

    async def _run_one(self, task: Task) -> None:
        results = self.results
        try:
            inputs = {}
            for dep in task.depends_on:  # a loop, not a comprehension: no closure cell
                inputs[dep] = results[dep]
            limits = self._limits[task.worker]
            if limits:
                async with AsyncExitStack() as stack:
                    for limit in limits:
                        await stack.enter_async_context(limit)
                    results[task.id] = await self._execute(task, inputs)
            else:
                results[task.id] = await self._execute(task, inputs)
        except asyncio.CancelledError:
            raise
        except Halt:
            self._halted = True
            self._active -= 1
            self._check_done()
            return
        except BaseException as exc:
            if not self._done.done():
                self._done.set_exception(exc)
            return
        finally:
            self._running.pop(task.id, None)
        self._active -= 1
        self._unfinished -= 1
        if results[task.id].status is TaskStatus.waiting:
            self._hold_downstream(task.id)
        else:
            waiting_on = self._waiting_on
            for child in self._dependants[task.id]:
                if child in waiting_on:  # not held downstream of another task's wait
                    waiting_on[child] -= 1
                    if waiting_on[child] == 0:
                        self._start(child)
        self._check_done()

    def _hold_downstream(self, task_id: str) -> None:
        """A task waits for approval: nothing downstream of it can run in this execution."""
        stack = list(self._dependants[task_id])
        while stack:
            child = stack.pop()
            if child not in self._held:
                self._held.add(child)
                self._waiting_on.pop(child, None)
                self._unfinished -= 1
                stack.extend(self._dependants[child])

    def _check_done(self) -> None:
        if self._done.done() or not self._begun or self._holds:
            return
        if self._unfinished == 0 or (self._halted and not self._active):
            self._done.set_result(None)
