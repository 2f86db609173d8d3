"""What a worker's tool loop costs per tool call, and what its exactly-once journal adds.

    python bench/bench_tools.py                  # 50 tasks x 3 turns x 2 calls
    python bench/bench_tools.py --tasks 200 --repeat 5

Every task of a one-level plan runs a tool loop on a ``ScriptedModel`` with no latency:
``--turns`` turns of ``--calls`` parallel calls of a tool that returns at once, then an
answer. The run goes through the real engine (``Orchestrator.run`` with a given plan),
once on a ``MemoryStore`` and once on a ``SQLiteStore`` in a temporary directory, where
each turn is one write (with the ledger rows so far) and each call two (``started``
before the tool runs, ``finished`` after). Per store it prints the wall time and the CPU
(``time.process_time()``, every thread) per tool call, best of ``--repeat``; their
difference is what durable tool calls cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from foreman import Orchestrator, Registry, Worker
from foreman.models.base import ModelRequest, ToolCall
from foreman.plan.schema import Plan, Task
from foreman.store import MemoryStore, SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, tool


@tool
def noop(n: int) -> str:
    """Return at once."""
    return "ok"


async def one_run(store_kind: str, tasks: int, turns: int, calls: int, folder: Path) -> tuple:
    def answer(request: ModelRequest):
        turn = sum(message.role == "assistant" for message in request.messages)
        if turn < turns:
            return [ToolCall(id="", name="noop", arguments={"n": i}) for i in range(calls)]
        return "done"

    worker = Worker(
        name="w", description="d", system_prompt="s", tools=("noop",), max_tool_turns=turns + 1
    )
    plan = Plan(tasks=[Task(id=f"t{i}", worker="w", instructions=f"t{i}") for i in range(tasks)])
    store = MemoryStore() if store_kind == "memory" else SQLiteStore(folder / "bench.db")
    orchestrator = Orchestrator(
        Registry([worker], tools=Toolbox([noop])),
        model=ScriptedModel(answer),
        store=store,
        assembly="concat",
    )
    async with orchestrator:
        wall, cpu = time.perf_counter(), time.process_time()
        result = await orchestrator.run("bench", plan=plan)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.status.value == "succeeded", result.error
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--turns", type=int, default=3, help="tool turns per task")
    parser.add_argument("--calls", type=int, default=2, help="parallel calls per turn")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    tool_calls = args.tasks * args.turns * args.calls
    print(f"{args.tasks} tasks x {args.turns} turns x {args.calls} calls = {tool_calls} calls")
    best: dict[str, tuple[float, float]] = {}
    for kind in ("memory", "sqlite"):
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as folder:
                runs.append(
                    asyncio.run(one_run(kind, args.tasks, args.turns, args.calls, Path(folder)))
                )
        best[kind] = min(runs, key=lambda run: run[1])
        wall, cpu = best[kind]
        print(
            f"{kind:>7}: wall {wall * 1000 / tool_calls:.3f} ms/call, "
            f"CPU {cpu * 1000 / tool_calls:.3f} ms/call"
        )
    added = (best["sqlite"][1] - best["memory"][1]) * 1000 / tool_calls
    print(f"the journal on SQLite adds {added:.3f} ms CPU per tool call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
