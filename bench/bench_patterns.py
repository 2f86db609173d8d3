"""Fan-out and compaction figures: staged aggregation against its critical path, and what
compaction leaves of results many times a context budget.

    python bench/bench_patterns.py
    python bench/bench_patterns.py --latency 0.05 --json

Fan-out: N chunks (20, 200, 1000), groups of 8, every call answering after ``--latency``
seconds on a ``ScriptedModel``; the aggregate unions its inputs' items, so the final
answer must hold all N (checked: a run that loses one fails the bench). The critical path
is levels x latency: the chunk level, then each level of merges and the aggregate. Reported: tasks,
levels, wall time of ``FanOut.run``, wall / critical path.

Compaction: 20 results of about 1,060 tokens each against budgets of 4k, 8k and 16k
tokens: tokens after, results compacted, summary calls, results kept whole.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel

from foreman import Worker
from foreman.engine.context import compact
from foreman.models.base import ModelRequest
from foreman.patterns import FanOut
from foreman.testing import ScriptedModel


class Items(BaseModel):
    items: list[str]


READER = Worker(name="reader", description="Reads a chunk.", system_prompt="Read.")
MERGER = Worker(name="merger", description="Merges.", system_prompt="Merge.", output_schema=Items)


def brain(request: ModelRequest) -> str:
    sent = json.loads(request.messages[0].content)
    if request.system == READER.system_prompt:
        return sent["args"]["chunk"]
    items: list[str] = []
    for value in sent["inputs"].values():
        items += value["items"] if isinstance(value, dict) else [value]
    return Items(items=items).model_dump_json()


async def fanout(chunks: int, latency: float) -> dict[str, Any]:
    pattern = FanOut(READER, MERGER, max_group=8)
    model = ScriptedModel(brain, latency=latency)
    documents = [f"doc{i}" for i in range(chunks)]
    plan = pattern.plan_for("q", documents)
    depth: dict[str, int] = {}
    for task in plan.topological_order():
        depth[task.id] = 1 + max((depth[dep] for dep in task.depends_on), default=0)
    levels = max(depth.values())  # the chunk level, then each level of merges
    started = time.perf_counter()
    result = await pattern.run("q", chunks=documents, model=model, concurrency=None)
    wall = time.perf_counter() - started
    assert sorted(pattern.output(result).items) == sorted(documents), "a chunk was lost"
    critical = levels * latency
    return {
        "chunks": chunks,
        "tasks": len(plan.tasks),
        "levels": levels,
        "wall_s": round(wall, 3),
        "critical_path_s": round(critical, 3),
        "wall_over_critical": round(wall / critical, 2),
    }


async def compaction(budget: int) -> dict[str, Any]:
    entries = [{"id": f"t{i}", "output": f"finding {i} " + "detail " * 600} for i in range(20)]
    model = ScriptedModel(lambda request: "summary " * 100)
    done = await compact(entries, budget=budget, purpose="write the answer", model=model)
    return {
        "budget": budget,
        "tokens_before": done.tokens_before,
        "tokens_after": done.tokens_after,
        "compacted": len(done.compacted),
        "summary_calls": done.attempts,
        "kept_whole": sum(1 for entry in done.entries if "id" in entry),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    await fanout(20, 0.001)  # warm up: imports, schemas
    figures = {
        "fanout": [await fanout(n, args.latency) for n in (20, 200, 1000)],
        "compaction": [await compaction(b) for b in (4000, 8000, 16000)],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for name, rows in figures.items():
        print(name)
        for row in rows:
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    asyncio.run(main())
