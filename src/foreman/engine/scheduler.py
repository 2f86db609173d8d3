"""Event-driven DAG scheduling: a task starts the moment its last dependency finishes.

There are no levels or rounds. Each finished task decrements its dependants' counters and
starts those that reach zero, so one slow branch never holds back an unrelated one. The
bookkeeping is O(1) per edge, which keeps the engine's own cost per task in microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus


class Halt(Exception):
    """Raised by ``execute`` to end the DAG early without failing it (a budget ran out):
    the task that raised it stays unfinished, no task starts after it, the tasks still
    running end on their own, and ``run_dag`` returns what finished."""


ExecuteTask = Callable[[Task, dict[str, TaskResult]], Awaitable[TaskResult]]


async def run_dag(
    plan: Plan,
    execute: ExecuteTask,
    *,
    concurrency: int | None = None,
    worker_limits: Mapping[str, int] | None = None,
    results: dict[str, TaskResult] | None = None,
) -> dict[str, TaskResult]:
    """Run every task of ``plan`` through ``execute`` as soon as its inputs exist.

    ``execute`` gets the task and the results of its dependencies. ``results`` is filled
    in place as tasks finish, so a caller keeps what was done even if the run fails; tasks
    already in it (from an earlier, interrupted execution) are not run again. An exception
    from ``execute`` cancels every running task and propagates, except ``Halt``, which
    lets them finish. A task whose result is ``waiting`` (for approval) holds back
    everything downstream of it; the rest goes on.
    """
    results = {} if results is None else results
    tasks = {task.id: task for task in plan.tasks}
    dependants = plan.dependants()
    waiting_on = {
        task.id: sum(dep not in results for dep in task.depends_on)
        for task in plan.tasks
        if task.id not in results
    }
    if not waiting_on:
        return results

    global_limit = asyncio.Semaphore(concurrency) if concurrency else None
    worker_limit = {name: asyncio.Semaphore(n) for name, n in (worker_limits or {}).items()}
    # The slots a task of each worker takes: its worker's own first, so waiting for it holds
    # no global slot. Worked out once, not per task: a task's start cost delays the next.
    limits = {
        name: [x for x in (worker_limit.get(name), global_limit) if x is not None]
        for name in {task.worker for task in plan.tasks}
    }
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()
    running: set[asyncio.Task[None]] = set()
    unfinished = len(waiting_on)
    held: set[str] = set()
    active = 0  # tasks started and not ended
    halted = False

    async def run_one(task: Task) -> None:
        nonlocal unfinished, active, halted
        try:
            inputs = {dep: results[dep] for dep in task.depends_on}
            if limits[task.worker]:
                async with AsyncExitStack() as stack:
                    for limit in limits[task.worker]:
                        await stack.enter_async_context(limit)
                    results[task.id] = await execute(task, inputs)
            else:
                results[task.id] = await execute(task, inputs)
        except asyncio.CancelledError:
            raise
        except Halt:
            halted = True
            active -= 1
            if not active and not all_done.done():
                all_done.set_result(None)
            return
        except BaseException as exc:
            if not all_done.done():
                all_done.set_exception(exc)
            return
        active -= 1
        unfinished -= 1
        if results[task.id].status is TaskStatus.waiting:
            hold(task.id)
        else:
            for child in dependants[task.id]:
                waiting_on[child] -= 1
                if waiting_on[child] == 0:
                    start(tasks[child])
        if (unfinished == 0 or (halted and not active)) and not all_done.done():
            all_done.set_result(None)

    def hold(task_id: str) -> None:
        """A task waits for approval: nothing downstream of it can run in this execution."""
        nonlocal unfinished
        stack = list(dependants[task_id])
        while stack:
            child = stack.pop()
            if child not in held:
                held.add(child)
                unfinished -= 1
                stack.extend(dependants[child])

    def start(task: Task) -> None:
        nonlocal active
        if halted:
            return
        active += 1
        handle = loop.create_task(run_one(task), name=f"foreman-task-{task.id}")
        running.add(handle)
        handle.add_done_callback(running.discard)

    for task_id, count in waiting_on.items():
        if count == 0:
            start(tasks[task_id])
    try:
        await all_done
    finally:
        for handle in list(running):
            handle.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return results
