"""Benchmark foreman's DAG engine against the physical lower bound (and LangGraph).

    python bench/bench_engine.py                 # foreman (memory, SQLite), floor, LangGraph
    python bench/bench_engine.py --repeat 5 --json
    python bench/bench_engine.py --no-sqlite --no-langgraph

Four synthetic workloads, built from a fixed seed so every run sees the same DAGs and the
same simulated model latencies (uniform 5-80 ms, fixed per task):

* ``independent``: 200 tasks without dependencies;
* ``random-dag``: 300 tasks, each depending on 0..3 random earlier tasks;
* ``levels``: 10 levels of 20 tasks, each depending on one random task of the level before;
* ``fan-out``: 1000 tasks without dependencies, the widest plan: every task starts in the
  same turn of the event loop and about 13 settle per millisecond.

Every workload is run through foreman's real engine (``Orchestrator.run`` with a given plan
and a ``ScriptedModel`` whose latency is looked up from the task id in the worker's JSON user
message). Per workload the script reports:

* the critical path: the longest chain of latencies through the DAG, the physical lower
  bound of any scheduler;
* the makespan: first task start to last task finish (assembly excluded), and the total
  wall time of the whole ``run`` call;
* makespan / critical path (target <= 1.05; <= 1.3 for ``fan-out``), the median and the
  best run (a busy machine only makes runs slower);
* CPU per task: ``time.process_time()`` over the run divided by the task count (target
  < 0.2 ms), once with the simulated latencies and once with latency 0 (no timers at all).

The call ledger is always on (it is not optional): every model call is recorded, with its
prompt and output (``record_prompts=True``, the default), priced, and written with the
checkpoints; a call's ``started`` row is written as the call starts.

foreman runs twice per workload: ``foreman`` with the default store (``MemoryStore``), and
``foreman+sqlite`` with checkpoints on disk, ``store=SQLiteStore(<tmp>/bench.db)``, a fresh
file per run in a temporary directory removed afterwards (``--sqlite-dir`` chooses where).
Each settled task is then written (result, buffered events and ledger rows) before its
dependants start and before its ``TaskFinished`` reaches the caller; tasks that settle
while a write is in flight are written together, one transaction on the store's writer
thread per group. ``time.process_time()`` counts every thread of the process, so the
writer thread's CPU is in the figures. A second table gives what checkpointing adds: CPU
ms/task of ``foreman+sqlite`` minus that of ``foreman`` (target <= 0.1 ms), the
transactions per task, its makespan ratio, and the bytes on disk per task (the db file
and its ``-wal`` right after the run, and the db file alone once the store is closed, which
folds the WAL back in). The makespan ends at the last ``TaskFinished`` the caller receives,
so it includes that task's checkpoint; the total adds the run's final update.

Two reference engines run the same workloads:

* ``asyncio floor``: a minimal hand-written event-driven scheduler (one coroutine per task
  awaiting its dependencies' futures, then ``asyncio.sleep``). It shows what asyncio's
  timers alone cost, so the engine's own overhead can be told apart from the event loop's;
* ``langgraph`` (when importable; ``pip install 'foreman[bench]'``): LangGraph's
  orchestrator-worker pattern as its docs teach it, an orchestrator node fanning out with
  ``Send`` to an async worker node. Dependencies are handled the way LangGraph users do it,
  in super-steps: each step the orchestrator sends every task whose dependencies are done,
  and loops until none is left.

Figures are medians over ``--repeat`` runs; the engines take turns (one run of each, then
the next round), so a slow spell of the machine hits all of them alike. Absolute times are
noisy on small machines, the ratio to the critical path is what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import operator
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from foreman import Orchestrator, Plan, Task, Worker
from foreman.events import Event, TaskFinished, TaskStarted
from foreman.models.base import ModelRequest
from foreman.store import SQLiteStore, Store
from foreman.testing import ScriptedModel

SEED = 20250101
MIN_LATENCY = 0.005
MAX_LATENCY = 0.080
MAKESPAN_TARGET = 1.05
FAN_OUT_TARGET = 1.3
CPU_TARGET_MS = 0.2
CHECKPOINT_TARGET_MS = 0.1


# --- workloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A DAG (task ids in topological order) and each task's simulated latency (seconds)."""

    name: str
    deps: dict[str, list[str]]
    latency: dict[str, float]

    @property
    def size(self) -> int:
        return len(self.deps)

    def critical_path(self) -> float:
        """The longest chain of latencies: no scheduler can finish sooner."""
        finish: dict[str, float] = {}
        for task_id, deps in self.deps.items():
            finish[task_id] = max((finish[d] for d in deps), default=0.0) + self.latency[task_id]
        return max(finish.values())

    def depth(self) -> int:
        """Tasks on the longest chain: the super-steps a level-by-level scheduler needs."""
        level: dict[str, int] = {}
        for task_id, deps in self.deps.items():
            level[task_id] = max((level[d] for d in deps), default=0) + 1
        return max(level.values())


def make_workloads(seed: int = SEED) -> list[Workload]:
    def latencies(rng: random.Random, ids: list[str]) -> dict[str, float]:
        return {task_id: rng.uniform(MIN_LATENCY, MAX_LATENCY) for task_id in ids}

    workloads = []

    rng = random.Random(seed)
    ids = [f"t{i}" for i in range(1, 201)]
    workloads.append(Workload("independent", {i: [] for i in ids}, latencies(rng, ids)))

    rng = random.Random(seed + 1)
    ids = [f"t{i}" for i in range(1, 301)]
    deps: dict[str, list[str]] = {}
    for index, task_id in enumerate(ids):
        count = min(rng.randint(0, 3), index)
        deps[task_id] = sorted(rng.sample(ids[:index], count), key=ids.index)
    workloads.append(Workload("random-dag", deps, latencies(rng, ids)))

    rng = random.Random(seed + 2)
    deps = {}
    previous: list[str] = []
    for level in range(1, 11):
        current = [f"l{level}t{i}" for i in range(1, 21)]
        for task_id in current:
            deps[task_id] = [rng.choice(previous)] if previous else []
        previous = current
    workloads.append(Workload("levels", deps, latencies(rng, list(deps))))

    rng = random.Random(seed + 3)
    ids = [f"f{i}" for i in range(1, 1001)]
    workloads.append(Workload("fan-out", {i: [] for i in ids}, latencies(rng, ids)))
    return workloads


def target_of(workload: Workload) -> float:
    """The makespan/critical-path target: 1.05, or 1.3 for the 1000-task fan-out, whose
    tasks all start in one turn of the event loop (the last one after 999 others)."""
    return FAN_OUT_TARGET if workload.name == "fan-out" else MAKESPAN_TARGET


# --- measurement -----------------------------------------------------------------------


@dataclass
class Timeline:
    """When each task started and finished (``time.perf_counter``), as the engine reports."""

    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)

    def makespan(self) -> float:
        return max(self.finished.values()) - min(self.started.values())

    def start_lag(self, workload: Workload) -> float:
        """Worst delay between a task becoming ready and starting (after the first start)."""
        origin = min(self.started.values())
        lags = [
            self.started[task_id] - max((self.finished[d] for d in deps), default=origin)
            for task_id, deps in workload.deps.items()
        ]
        return max(lags)


@dataclass
class RunStats:
    """One run: its timeline, wall and CPU seconds, and the store's bytes on disk if any."""

    timeline: Timeline
    wall: float
    cpu: float
    disk_bytes: int | None = None
    """The db file plus its ``-wal`` right after the run, the store still open."""
    closed_bytes: int | None = None
    """The db file once the store is closed (the WAL folded back in and removed)."""
    writes: int | None = None
    """Group writes of checkpoints and ledger rows (``save_checkpoints`` calls)."""


@dataclass
class Sample:
    makespan: float
    total: float
    cpu: float
    start_lag: float
    disk_bytes: int | None
    closed_bytes: int | None
    writes: int | None


RunOnce = Callable[[Workload, float], Awaitable[RunStats]]
"""Run a workload with latencies scaled by a factor."""


async def measure(run_once: RunOnce, workload: Workload, scale: float) -> Sample:
    gc.collect()
    run = await run_once(workload, scale)
    timeline = run.timeline
    if len(timeline.finished) != workload.size:
        raise RuntimeError(
            f"{workload.name}: {len(timeline.finished)} of {workload.size} tasks finished"
        )
    return Sample(
        timeline.makespan(),
        run.wall,
        run.cpu,
        timeline.start_lag(workload),
        run.disk_bytes,
        run.closed_bytes,
        run.writes,
    )


# --- foreman -----------------------------------------------------------------------------

BENCH_WORKER = Worker(
    name="sim",
    description="A simulated worker whose model answers after a fixed latency.",
    system_prompt="You are a simulated worker.",
)


def foreman_plan(workload: Workload) -> Plan:
    return Plan(
        tasks=[
            Task(id=task_id, worker=BENCH_WORKER.name, instructions=task_id, depends_on=deps)
            for task_id, deps in workload.deps.items()
        ]
    )


async def run_foreman(
    workload: Workload, scale: float, store: Store | None = None
) -> tuple[Timeline, float, float]:
    """One run through ``Orchestrator.run``; ``store=None`` is the default ``MemoryStore``."""
    latency = {task_id: seconds * scale for task_id, seconds in workload.latency.items()}

    def task_id_of(request: ModelRequest) -> str:
        # The worker's message starts '{"instructions": "<id>"': slicing it keeps the test
        # double's own cost (two JSON parses per call) out of the engine's figures.
        return request.messages[-1].content.split('"', 4)[3]

    model = ScriptedModel(
        lambda request: f"output of {task_id_of(request)}",
        latency=lambda request: latency[task_id_of(request)],
    )
    orchestrator = Orchestrator(
        workers=[BENCH_WORKER], model=model, concurrency=None, assembly="concat", store=store
    )
    plan = foreman_plan(workload)
    timeline = Timeline()
    clock = time.perf_counter

    def on_event(event: Event) -> None:
        if isinstance(event, TaskStarted):
            timeline.started[event.task_id] = clock()
        elif isinstance(event, TaskFinished):
            timeline.finished[event.task_id] = clock()

    cpu, wall = time.process_time(), clock()
    result = await orchestrator.run("bench", plan=plan, on_event=on_event)
    wall, cpu = clock() - wall, time.process_time() - cpu
    if result.status != "succeeded":
        raise RuntimeError(f"foreman run {result.status}: {result.error}")
    return timeline, wall, cpu


async def run_foreman_memory(workload: Workload, scale: float) -> RunStats:
    return RunStats(*await run_foreman(workload, scale))


def sqlite_runner(directory: Path | None = None) -> RunOnce:
    """foreman with ``SQLiteStore``: a fresh db per run in a temporary directory under
    ``directory`` (the system's temporary folder by default), removed after the run."""

    async def run_foreman_sqlite(workload: Workload, scale: float) -> RunStats:
        with tempfile.TemporaryDirectory(prefix="foreman-bench-", dir=directory) as tmp:
            path = Path(tmp) / "bench.db"
            store = CountingSQLiteStore(path)
            try:
                timeline, wall, cpu = await run_foreman(workload, scale, store)
                disk = sum(_size(Path(f"{path}{suffix}")) for suffix in ("", "-wal"))
            finally:
                await store.aclose()
            return RunStats(timeline, wall, cpu, disk, _size(path), store.writes)

    return run_foreman_sqlite


class CountingSQLiteStore(SQLiteStore):
    """``SQLiteStore``, counting its group writes (one transaction each)."""

    writes = 0

    async def save_checkpoints(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        await super().save_checkpoints(*args, **kwargs)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# --- asyncio floor -------------------------------------------------------------------


async def run_floor(workload: Workload, scale: float) -> RunStats:
    """The least any asyncio scheduler can do: await the inputs, sleep, resolve a future."""
    timeline = Timeline()
    clock = time.perf_counter
    cpu, wall = time.process_time(), clock()
    loop = asyncio.get_running_loop()
    done = {task_id: loop.create_future() for task_id in workload.deps}

    async def one(task_id: str, deps: list[str]) -> None:
        for dep in deps:
            await done[dep]
        timeline.started[task_id] = clock()
        delay = workload.latency[task_id] * scale
        if delay:
            await asyncio.sleep(delay)
        timeline.finished[task_id] = clock()
        done[task_id].set_result(f"output of {task_id}")

    await asyncio.gather(*(one(task_id, deps) for task_id, deps in workload.deps.items()))
    wall, cpu = clock() - wall, time.process_time() - cpu
    return RunStats(timeline, wall, cpu)


# --- LangGraph -----------------------------------------------------------------------


class GraphState(TypedDict):
    """The orchestrator's state: every completed (task id, output), and the next wave."""

    completed: Annotated[list[tuple[str, str]], operator.add]
    ready: list[str]


class WorkerState(TypedDict):
    """What one ``Send`` carries to the worker node: its task and its inputs."""

    task_id: str
    inputs: dict[str, str]


def langgraph_available() -> bool:
    return importlib.util.find_spec("langgraph") is not None


def build_langgraph(workload: Workload, timeline: Timeline, latency: dict[str, float]) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    clock = time.perf_counter

    def orchestrator(state: GraphState) -> dict[str, Any]:
        # Super-steps: every worker sent in the last step has finished when this runs.
        done = {task_id for task_id, _ in state["completed"]}
        ready = [
            task_id
            for task_id, deps in workload.deps.items()
            if task_id not in done and all(dep in done for dep in deps)
        ]
        return {"ready": ready}

    def assign_workers(state: GraphState) -> Any:
        if not state["ready"]:
            return END
        outputs = dict(state["completed"])
        return [
            Send(
                "worker",
                {"task_id": task_id, "inputs": {d: outputs[d] for d in workload.deps[task_id]}},
            )
            for task_id in state["ready"]
        ]

    async def worker(state: WorkerState) -> dict[str, Any]:
        task_id = state["task_id"]
        timeline.started[task_id] = clock()
        if delay := latency[task_id]:
            await asyncio.sleep(delay)
        timeline.finished[task_id] = clock()
        return {"completed": [(task_id, f"output of {task_id}")]}

    builder = StateGraph(GraphState)
    builder.add_node("orchestrator", orchestrator)
    builder.add_node("worker", worker)
    builder.add_edge(START, "orchestrator")
    builder.add_conditional_edges("orchestrator", assign_workers, ["worker", END])
    builder.add_edge("worker", "orchestrator")
    return builder.compile()


async def run_langgraph(workload: Workload, scale: float) -> RunStats:
    latency = {task_id: seconds * scale for task_id, seconds in workload.latency.items()}
    timeline = Timeline()
    graph = build_langgraph(workload, timeline, latency)
    config = {"recursion_limit": 2 * workload.depth() + 10}
    clock = time.perf_counter
    cpu, wall = time.process_time(), clock()
    await graph.ainvoke({"completed": [], "ready": []}, config=config)
    wall, cpu = clock() - wall, time.process_time() - cpu
    return RunStats(timeline, wall, cpu)


# --- report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    name: str
    store: str
    """Where the engine keeps run state: foreman's store, or none."""
    run_once: RunOnce


@dataclass
class Row:
    workload: str
    tasks: int
    depth: int
    engine: str
    store: str
    critical_path_ms: float
    makespan_ms: float
    total_ms: float
    ratio: float
    ratio_best: float
    cpu_ms_per_task: float
    cpu_ms_per_task_zero_latency: float
    max_start_lag_ms: float
    disk_bytes_per_task: float | None
    closed_bytes_per_task: float | None
    writes_per_task: float | None
    target: float
    repeat: int


def _median_or_none(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


async def bench(engines: list[Engine], repeat: int) -> list[Row]:
    rows = []
    for workload in make_workloads():
        critical = workload.critical_path()
        for engine in engines:
            await measure(engine.run_once, workload, 0.0)  # warm up imports and caches
        # Take turns, one run per engine and round, so drift hits every engine alike.
        timed: dict[str, list[Sample]] = {engine.name: [] for engine in engines}
        idle: dict[str, list[Sample]] = {engine.name: [] for engine in engines}
        for samples, scale in ((timed, 1.0), (idle, 0.0)):
            for _ in range(repeat):
                for engine in engines:
                    samples[engine.name].append(await measure(engine.run_once, workload, scale))
        for engine in engines:
            runs, quiet = timed[engine.name], idle[engine.name]
            makespan = statistics.median(s.makespan for s in runs)
            disk = _median_or_none([s.disk_bytes for s in runs])
            closed = _median_or_none([s.closed_bytes for s in runs])
            writes = _median_or_none([s.writes for s in runs])
            rows.append(
                Row(
                    workload=workload.name,
                    tasks=workload.size,
                    depth=workload.depth(),
                    engine=engine.name,
                    store=engine.store,
                    critical_path_ms=critical * 1e3,
                    makespan_ms=makespan * 1e3,
                    total_ms=statistics.median(s.total for s in runs) * 1e3,
                    ratio=makespan / critical,
                    ratio_best=min(s.makespan for s in runs) / critical,
                    cpu_ms_per_task=statistics.median(s.cpu for s in runs) / workload.size * 1e3,
                    cpu_ms_per_task_zero_latency=(
                        statistics.median(s.cpu for s in quiet) / workload.size * 1e3
                    ),
                    max_start_lag_ms=statistics.median(s.start_lag for s in runs) * 1e3,
                    disk_bytes_per_task=None if disk is None else disk / workload.size,
                    closed_bytes_per_task=None if closed is None else closed / workload.size,
                    writes_per_task=None if writes is None else writes / workload.size,
                    target=target_of(workload),
                    repeat=repeat,
                )
            )
    return rows


@dataclass
class CheckpointCost:
    """What SQLite checkpoints add to plain foreman on one workload."""

    workload: str
    tasks: int
    cpu_ms_per_task_memory: float
    cpu_ms_per_task_sqlite: float
    added_ms_per_task: float
    added_ms_per_task_zero_latency: float
    ratio_memory: float
    ratio_sqlite: float
    writes_per_task: float
    disk_bytes_per_task: float
    closed_bytes_per_task: float


def checkpoint_costs(rows: list[Row], memory: str, sqlite: str) -> list[CheckpointCost]:
    by_key = {(row.workload, row.engine): row for row in rows}
    costs = []
    for row in rows:
        if row.engine != sqlite or (row.workload, memory) not in by_key:
            continue
        plain = by_key[row.workload, memory]
        costs.append(
            CheckpointCost(
                workload=row.workload,
                tasks=row.tasks,
                cpu_ms_per_task_memory=plain.cpu_ms_per_task,
                cpu_ms_per_task_sqlite=row.cpu_ms_per_task,
                added_ms_per_task=row.cpu_ms_per_task - plain.cpu_ms_per_task,
                added_ms_per_task_zero_latency=(
                    row.cpu_ms_per_task_zero_latency - plain.cpu_ms_per_task_zero_latency
                ),
                ratio_memory=plain.ratio,
                ratio_sqlite=row.ratio,
                writes_per_task=row.writes_per_task or 0.0,
                disk_bytes_per_task=row.disk_bytes_per_task or 0.0,
                closed_bytes_per_task=row.closed_bytes_per_task or 0.0,
            )
        )
    return costs


Column = tuple[str, str, str]

COLUMNS: list[Column] = [
    ("workload", "workload", "<"),
    ("tasks", "tasks", ">"),
    ("depth", "depth", ">"),
    ("engine", "engine", "<"),
    ("store", "store", "<"),
    ("critical path ms", "critical_path_ms", ">"),
    ("makespan ms", "makespan_ms", ">"),
    ("makespan/critical", "ratio", ">"),
    ("best run", "ratio_best", ">"),
    ("target", "target", ">"),
    ("CPU ms/task", "cpu_ms_per_task", ">"),
    ("CPU ms/task @0 latency", "cpu_ms_per_task_zero_latency", ">"),
    ("total ms", "total_ms", ">"),
    ("max start lag ms", "max_start_lag_ms", ">"),
]

CHECKPOINT_COLUMNS: list[Column] = [
    ("workload", "workload", "<"),
    ("tasks", "tasks", ">"),
    ("CPU ms/task memory", "cpu_ms_per_task_memory", ">"),
    ("CPU ms/task sqlite", "cpu_ms_per_task_sqlite", ">"),
    ("added ms/task", "added_ms_per_task", ">"),
    ("added ms/task @0 latency", "added_ms_per_task_zero_latency", ">"),
    ("makespan/critical memory", "ratio_memory", ">"),
    ("makespan/critical sqlite", "ratio_sqlite", ">"),
    ("writes/task", "writes_per_task", ">"),
    ("bytes/task db+wal", "disk_bytes_per_task", ">"),
    ("bytes/task db closed", "closed_bytes_per_task", ">"),
]


def render(rows: list[Any], columns: list[Column] = COLUMNS) -> str:
    def cell(row: Any, key: str) -> str:
        value = getattr(row, key)
        if key.startswith(("ratio", "cpu", "added", "writes")):
            return f"{value:.3f}"
        if key == "target":
            return f"{value:g}"
        if "bytes" in key:
            return f"{value:.0f}"
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    table = [[title for title, _, _ in columns]]
    table += [[cell(row, key) for _, key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if align == "<" else c.rjust(w)
            for c, w, (_, _, align) in zip(cells, widths, columns, strict=True)
        ).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    previous = None
    for row, cells in zip(rows, table[1:], strict=True):
        if previous is not None and row.workload != previous:
            out.append("")
        previous = row.workload
        out.append(line(cells))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for package in ("foreman", "langgraph", "pydantic"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            continue
    return {"platform": platform.platform(), "cpus": os.cpu_count(), **versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--no-langgraph", action="store_true", help="skip LangGraph")
    parser.add_argument(
        "--no-sqlite", action="store_true", help="skip foreman with SQLite checkpoints"
    )
    parser.add_argument(
        "--sqlite-dir",
        type=Path,
        default=None,
        help="where the temporary SQLite databases go (default: the system's temp folder)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    memory, sqlite = "foreman", "foreman+sqlite"
    engines = [Engine(memory, "memory (default)", run_foreman_memory)]
    if not args.no_sqlite:
        engines.append(Engine(sqlite, "sqlite (WAL)", sqlite_runner(args.sqlite_dir)))
    engines.append(Engine("asyncio floor", "-", run_floor))
    if not args.no_langgraph:
        if langgraph_available():
            engines.append(Engine("langgraph", "none", run_langgraph))
        elif not args.json:
            print("langgraph is not installed; pip install 'foreman[bench]' to compare.\n")

    rows = asyncio.run(bench(engines, args.repeat))
    costs = checkpoint_costs(rows, memory, sqlite)
    info = machine()
    if not args.no_sqlite:
        info["sqlite"] = sqlite3.sqlite_version
        info["sqlite dir"] = str(args.sqlite_dir or tempfile.gettempdir())
    if args.json:

        def rounded(item: Any) -> dict[str, Any]:
            return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(item).items()}

        figures = {
            "machine": info,
            "rows": [rounded(row) for row in rows],
            "checkpoints": [rounded(cost) for cost in costs],
        }
        print(json.dumps(figures, indent=2))
        return 0
    print(render(rows))
    print()
    print(
        f"median of {args.repeat} runs; latencies uniform {MIN_LATENCY * 1e3:g}-"
        f"{MAX_LATENCY * 1e3:g} ms, seed {SEED}; targets: makespan/critical <= the target "
        f"column ({MAKESPAN_TARGET}, fan-out {FAN_OUT_TARGET}), CPU < {CPU_TARGET_MS} ms/task"
    )
    if costs:
        print()
        print("What SQLite checkpoints add (foreman+sqlite minus foreman, same run):")
        print()
        print(render(costs, CHECKPOINT_COLUMNS))
        print()
        print(
            f"targets: added <= {CHECKPOINT_TARGET_MS} ms/task, makespan/critical <= "
            f"{MAKESPAN_TARGET} (fan-out {FAN_OUT_TARGET}); writes/task: group writes "
            "(transactions) of checkpoints and ledger rows per task; db+wal: right after "
            "the run; db closed: after the store is closed (WAL folded in)"
        )
    print()
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
