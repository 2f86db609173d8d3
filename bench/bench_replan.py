"""What replanning costs: extra tokens per run, and the engine's time from a result to the
tasks a revision adds.

    python bench/bench_replan.py                 # both tables, memory and SQLite stores
    python bench/bench_replan.py --repeat 50

Tokens: ``examples/billing_refactor.py``'s scenario on its scripted model (token counts are
words sent and received, as ``ScriptedModel`` counts them), once per policy, split by the
ledger's purpose. The ``replan`` row is what revising cost on top of the rest.

Latency: a plan of one task whose result asks for a replan; the revision (answered at
once, zero latency) adds ``--width`` tasks that depend on it. The time measured is from
the worker's answer (its ``task_finished`` event) to each added task's ``task_started``:
the checkpoint of the result, building the revision prompt, parsing and validating the
answer, storing the new plan version and growing the DAG. Best, median and worst of
``--repeat`` runs, per store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from billing_refactor import REQUEST, TEAM, scripted_model

from foreman import Orchestrator
from foreman.events import Event, TaskFinished, TaskStarted
from foreman.models.base import ModelRequest
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.spec import Worker


async def tokens(policy: str) -> dict[str, tuple[int, int]]:
    """Calls and tokens per purpose of one scripted billing_refactor run."""
    store = MemoryStore()
    orchestrator = Orchestrator(
        TEAM, model=scripted_model(), store=store, replan=policy, max_replans=5
    )
    async with orchestrator:
        result = await orchestrator.run(REQUEST)
        calls = await store.list_calls(run_id=result.run_id)
    by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for call in calls:
        by[call.purpose.value][0] += 1
        by[call.purpose.value][1] += call.usage.total_tokens
    return {purpose: (n, spent) for purpose, (n, spent) in by.items()}


def fan_out_model(width: int) -> ScriptedModel:
    plan = {"tasks": [{"id": "t1", "worker": "w", "instructions": "look", "depends_on": []}]}
    added = [
        {"id": f"n{i}", "worker": "w", "instructions": f"part {i}", "depends_on": ["t1"]}
        for i in range(width)
    ]
    revision = json.dumps({"reason": "split", "add": added, "change": [], "drop": []})

    def answer(request: ModelRequest) -> str:
        properties = (request.output_schema or {}).get("properties", {})
        if "tasks" in properties:
            return json.dumps(plan)
        if "add" in properties:
            return revision  # only t1 asks (on-hint): one revision per run
        if "look" in request.messages[0].content:
            return "found parts\nREPLAN: split it"
        return "done"

    return ScriptedModel(answer)


async def result_to_start(store_kind: str, width: int, directory: Path) -> list[float]:
    """Seconds from the trigger's result to each added task's start, in one run."""
    finished: list[float] = []
    started: list[float] = []

    def on_event(event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, TaskFinished) and event.task_id == "t1":
            finished.append(now)
        elif isinstance(event, TaskStarted) and event.task_id != "t1":
            started.append(now)

    store = MemoryStore() if store_kind == "memory" else SQLiteStore(directory / "runs.db")
    worker = Worker(name="w", description="works", system_prompt="You work.")
    orchestrator = Orchestrator(
        [worker],
        model=fan_out_model(width),
        store=store,
        replan="on-hint",
        assembly="concat",
        concurrency=None,
    )
    async with orchestrator:
        await orchestrator.run("bench", on_event=on_event)
    return [start - finished[0] for start in started]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per store")
    parser.add_argument("--width", type=int, default=3, help="tasks the revision adds")
    args = parser.parse_args(argv)

    print("Extra tokens of replanning: billing_refactor, scripted model")
    print(f"{'policy':<9} {'purpose':<10} {'calls':>5} {'tokens':>7} {'share':>6}")
    for policy in ("on-hint", "always"):
        by = asyncio.run(tokens(policy))
        total = sum(spent for _, spent in by.values())
        for purpose in ("plan", "task", "replan", "synthesis"):
            calls, spent = by.get(purpose, (0, 0))
            print(f"{policy:<9} {purpose:<10} {calls:>5} {spent:>7} {spent / total:>6.1%}")
        print(f"{policy:<9} {'total':<10} {sum(n for n, _ in by.values()):>5} {total:>7}")

    print()
    print(f"Result to new tasks started (ms), revision answered at once, {args.width} added")
    print(f"{'store':<7} {'best':>7} {'median':>7} {'worst':>7}  (first start / last start)")
    with tempfile.TemporaryDirectory() as directory:
        for kind in ("memory", "sqlite"):
            first, last = [], []
            for n in range(args.repeat):
                run_dir = Path(directory) / f"{kind}{n}"
                run_dir.mkdir()
                gaps = asyncio.run(result_to_start(kind, args.width, run_dir))
                first.append(min(gaps) * 1000)
                last.append(max(gaps) * 1000)
            print(
                f"{kind:<7} {min(first):>7.2f} {statistics.median(first):>7.2f} "
                f"{max(first):>7.2f}  first"
            )
            print(
                f"{'':<7} {min(last):>7.2f} {statistics.median(last):>7.2f} {max(last):>7.2f}  last"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
