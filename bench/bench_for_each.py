"""Benchmark for-each expansion: from a dependency's result to its item tasks starting.

    python bench/bench_for_each.py                # 1, 10, 100, 1000 items; memory and SQLite
    python bench/bench_for_each.py --repeat 9 --items 10 100 --json

Two plans do the same work through the real engine (``Orchestrator.run`` with a given
plan and a ``ScriptedModel``):

* ``for-each``: ``t1`` (a worker with a structured output) returns N file names, and
  ``t2`` has ``for_each: "t1.files"``: the engine adds ``t2.1..t2.N`` when t1 settles;
* ``static``: the same N tasks written into the plan, each depending on ``t1``: what a
  plan that already knew N would cost, so the difference is expansion's own.

The clock starts when the model hands back t1's answer and stops when the model receives
the first, and the last, item call. In between: t1's output parsed against its schema,
its ledger row and checkpoint (on disk for SQLite), its ``task_finished`` delivered, the
expansion (for-each only), and each item's start (limits, input, approval check, ledger
``started`` row). Items answer after 1 s, so every item starts before any finishes and
no item's completion competes with the starts. One untimed warm-up run of each plan goes
first (imports, schema building). Figures are medians over ``--repeat`` runs,
the two plans taking turns; concurrency is unbounded (``concurrency=None``), so all N may
start at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from foreman import Orchestrator
from foreman.models.base import ModelRequest, ModelResponse
from foreman.plan.schema import Plan, Task
from foreman.store import MemoryStore, SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry, Worker

ITEM_LATENCY = 1.0


class Files(BaseModel):
    files: list[str]


TEAM = Registry(
    [
        Worker(name="lister", description="Lists files.", system_prompt="L", output_schema=Files),
        Worker(name="reader", description="Reads one file.", system_prompt="R"),
    ]
)


class Clocked(ScriptedModel):
    """Answers t1 with N names and items after ``ITEM_LATENCY``; notes when t1's answer
    left and each item call arrived."""

    def __init__(self, n: int) -> None:
        super().__init__(self._answer, latency=self._latency)
        self.n = n
        self.answered: float | None = None
        self.arrived: list[float] = []

    def _answer(self, request: ModelRequest) -> str:
        if request.system == "L":
            return json.dumps({"files": [f"f{i}.py" for i in range(self.n)]})
        return "read"

    def _latency(self, request: ModelRequest) -> float:
        return ITEM_LATENCY if request.system == "R" else 0.0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if request.system == "R":
            self.arrived.append(time.perf_counter())
        response = await super().complete(request)
        if request.system == "L":
            self.answered = time.perf_counter()
        return response


def plans(n: int) -> dict[str, Plan]:
    t1 = Task(id="t1", worker="lister", instructions="list")
    for_each = Task(
        id="t2", worker="reader", instructions="read", depends_on=["t1"], for_each="t1.files"
    )
    static = [
        Task(id=f"s{i}", worker="reader", instructions="read", depends_on=["t1"]) for i in range(n)
    ]
    return {"for-each": Plan(tasks=[t1, for_each]), "static": Plan(tasks=[t1, *static])}


async def once(plan: Plan, n: int, store_kind: str, tmp: Path) -> tuple[float, float]:
    model = Clocked(n)
    store = MemoryStore() if store_kind == "memory" else SQLiteStore(tmp / f"{time.time_ns()}.db")
    orchestrator = Orchestrator(TEAM, model=model, store=store, concurrency=None, assembly="concat")
    try:
        result = await orchestrator.run("read them", plan=plan)
    finally:
        await store.aclose()
    assert result.status.value == "succeeded", result.error
    assert model.answered is not None and len(model.arrived) == n
    return (min(model.arrived) - model.answered) * 1000, (
        max(model.arrived) - model.answered
    ) * 1000


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for plan in plans(2).values():  # warm up: imports, schemas, the first store
            await once(plan, 2, "sqlite", Path(tmp))
        for store_kind in ("memory", "sqlite"):
            for n in args.items:
                runs: dict[str, list[tuple[float, float]]] = {"for-each": [], "static": []}
                for _ in range(args.repeat):
                    for name, plan in plans(n).items():
                        runs[name].append(await once(plan, n, store_kind, Path(tmp)))
                for name, figures in runs.items():
                    rows.append(
                        {
                            "store": store_kind,
                            "items": n,
                            "plan": name,
                            "first_ms": statistics.median(f for f, _ in figures),
                            "all_ms": statistics.median(a for _, a in figures),
                        }
                    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| store | items | plan | first item starts (ms) | all items started (ms) |")
    print("|---|---:|---|---:|---:|")
    for row in rows:
        print(
            f"| {row['store']} | {row['items']} | {row['plan']} | {row['first_ms']:.2f} "
            f"| {row['all_ms']:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
