"""What a task waiting on its model holds. In a wide fan-out every ready task is prepared
in one turn of the event loop, so each coroutine and object on a task's way to its model
delays the start of all the tasks after it, and every live object is scanned by each
garbage collection until the answer comes (docs/benchmarks.md). These counts are the
code's structure, not timings: a layer added on that path fails here, not in a bench."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

from foreman import Orchestrator
from foreman.testing import ScriptedModel
from helpers import plan_of, task, worker

TASKS = 50


async def footprint(**options) -> Counter[str]:
    """Objects the garbage collector tracks that appeared while ``TASKS`` independent
    tasks all wait on their model, by type, per task."""
    release, all_waiting = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def latency_gate() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == TASKS:
            all_waiting.set()
        await release.wait()

    class Held(ScriptedModel):
        async def complete(self, request):
            await latency_gate()
            return await super().complete(request)

    orchestrator = Orchestrator(
        workers=[worker("researcher")],
        model=Held(lambda request: "done"),
        concurrency=None,
        assembly="concat",
        **options,
    )
    plan = plan_of(*(task(f"t{i}") for i in range(TASKS)))
    gc.collect()
    gc.disable()
    try:
        before = {id(thing) for thing in gc.get_objects()}
        run = asyncio.create_task(orchestrator.run("footprint", plan=plan))
        await asyncio.wait_for(all_waiting.wait(), 30)
        grown = Counter(
            type(thing).__name__ for thing in gc.get_objects() if id(thing) not in before
        )
    finally:
        gc.enable()
    release.set()
    assert (await run).status == "succeeded"
    return Counter({kind: count // TASKS for kind, count in grown.items()})


async def test_a_task_waiting_on_its_model_holds_few_coroutines_and_objects():
    held = await footprint()
    # The scheduler's, the checkpointing wrapper's, the task runner's, the retry loop's,
    # the model's own (here two: the test's hold and ScriptedModel's) and the model's
    # wait: nothing else between a task and its model.
    assert held["coroutine"] <= 7, held
    assert held["cell"] == 0, held  # no closure per task on the way
    assert sum(held.values()) <= 56, held  # 49 now; 66 before the cuts of 2026-12
