"""Is replanning still making progress? The engine's own progress ledger.

Magentic-One asks its orchestrator model, at every step, whether the work is progressing
or looping, and restarts or stops after a few stalled steps. Here the question is
answered from facts the engine holds, without a model call:

- a revision that adds (or changes a task into) one equal to a task already done or
  failed repeats work: replanning stalls at once;
- a revision that adds nothing new (every task it adds or changes is already in the plan
  as it stands) is an idle one; ``MAX_IDLE`` of them in a row stall;
- a subtask that failed ``MAX_FAILURES`` times (tasks of the same worker with similar
  instructions: a retry under a new id is the same subtask) stalls.

Two tasks are *equal* when they go to the same worker with the same instructions (case,
spacing and punctuation aside); *similar* when, on top of the worker, their instructions
share most of their words (``SIMILAR``: Jaccard similarity of the word sets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from foreman.plan.revise import Revision
from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus

MAX_IDLE = 2
MAX_FAILURES = 2
SIMILAR = 0.6

_WORD = re.compile(r"[a-z0-9_]+")


def words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def equal(a: Task, b: Task) -> bool:
    return a.worker == b.worker and words(a.instructions) == words(b.instructions)


def similar(a: Task, b: Task) -> bool:
    if a.worker != b.worker:
        return False
    left, right = set(words(a.instructions)), set(words(b.instructions))
    if not left or not right:
        return left == right
    return len(left & right) / len(left | right) >= SIMILAR


class Progress:
    """Counts what replanning has done, and says when it stalled (and why)."""

    def __init__(self) -> None:
        self.idle = 0

    def failed(
        self, result: TaskResult, plan: Plan, results: Mapping[str, TaskResult]
    ) -> str | None:
        """The stall a failed task makes, if the same subtask failed often enough."""
        if result.status is not TaskStatus.failed or result.task_id not in _ids(plan):
            return None
        task = plan.task(result.task_id)
        same = [
            other.id
            for other in plan.tasks
            if (done := results.get(other.id)) is not None
            and done.status is TaskStatus.failed
            and similar(other, task)
        ]
        if result.task_id not in same:
            same.append(result.task_id)
        if len(same) < MAX_FAILURES:
            return None
        return (
            f"the same subtask failed {len(same)} times ({', '.join(same)}): "
            f"{(result.error or 'no error given')[:200]}"
        )

    def revision(
        self, revision: Revision, plan: Plan, results: Mapping[str, TaskResult]
    ) -> tuple[bool, str | None]:
        """Whether ``revision`` is idle (adds nothing new), and the stall it makes, if any."""
        settled = [task for task in plan.tasks if task.id in results]
        current = {task.id: task for task in plan.tasks}
        for task in [*revision.add, *revision.change]:
            for done in settled:
                if equal(task, done):
                    state = results[done.id].status.value
                    return False, (
                        f"the revision repeats task {done.id!r} ({state}) as {task.id!r}: "
                        f"{task.worker}: {task.instructions[:120]}"
                    )
        open_tasks = [task for task in plan.tasks if task.id not in results]
        new = (
            revision.drop
            or any(not any(equal(task, other) for other in open_tasks) for task in revision.add)
            or any(current.get(task.id) != task for task in revision.change)
        )
        if new:
            self.idle = 0
            return False, None
        self.idle += 1
        if self.idle >= MAX_IDLE:
            return True, f"{self.idle} revisions in a row added nothing new to the plan"
        return True, None


def _ids(plan: Plan) -> set[str]:
    return {task.id for task in plan.tasks}
