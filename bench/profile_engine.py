"""Where foreman's engine spends its time: phase timings and a cProfile of one run.

    python bench/profile_engine.py                      # phase timings, every workload
    python bench/profile_engine.py --cprofile random-dag  # cProfile of one run, latency 0
    python bench/profile_engine.py --sqlite             # the same, checkpointing to SQLite

The workloads are those of ``bench_engine.py`` plus ``chain``: 300 tasks in one line, each
depending on the previous one (1 ms latency each), the shape where per-run costs that grow
with the DAG's depth show up. Phases of one run (median of ``--repeat`` runs):

* setup: ``run()`` called -> first ``TaskStarted`` (plan validation, first events);
* start lag: a task's last dependency finished -> its ``TaskStarted`` (median and max);
  for tasks without dependencies, measured from the first ``TaskStarted``, so for the
  ``independent`` workload the max is the time it takes to start every task;
* model-call lag: ``TaskStarted`` -> the model's ``complete`` is entered (median);
* wrap-up: last ``TaskFinished`` -> ``run()`` returns (confidences, assembly, result);
* gc: the garbage collector's passes during the run (any generation) and their time
  (CPU time, ``gc.callbacks``), which the engine's own CPU figures include.

With ``--sqlite`` every run checkpoints to a fresh ``SQLiteStore`` in a temporary directory
(as ``foreman+sqlite`` in ``bench_engine.py``), so a start lag includes the dependency's
checkpoint, and the wrap-up the last checkpoint and the run's final write. cProfile sees
only the event loop's thread, not the store's writer thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_engine import BENCH_WORKER, Workload, foreman_plan, make_workloads
from foreman import Orchestrator
from foreman.events import Event, TaskFinished, TaskStarted
from foreman.models.base import ModelRequest
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel


def chain(size: int = 300, latency: float = 0.001) -> Workload:
    ids = [f"c{i}" for i in range(1, size + 1)]
    deps = {task_id: ids[i - 1 : i] for i, task_id in enumerate(ids)}
    return Workload("chain", deps, dict.fromkeys(ids, latency))


def workloads() -> dict[str, Workload]:
    return {w.name: w for w in [*make_workloads(), chain()]}


async def phases(workload: Workload, scale: float = 1.0, sqlite: bool = False) -> dict[str, float]:
    """One foreman run, instrumented; every figure in milliseconds."""
    if sqlite:
        with tempfile.TemporaryDirectory(prefix="foreman-profile-") as tmp:
            store = SQLiteStore(Path(tmp) / "profile.db")
            try:
                return await _phases(workload, scale, store)
            finally:
                await store.aclose()
    return await _phases(workload, scale, None)


async def _phases(workload: Workload, scale: float, store: SQLiteStore | None) -> dict[str, float]:
    clock = time.perf_counter
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    called: dict[str, float] = {}

    def task_id_of(request: ModelRequest) -> str:
        return json.loads(request.messages[-1].content)["instructions"]

    def latency(request: ModelRequest) -> float:
        task_id = task_id_of(request)
        called[task_id] = clock()
        return workload.latency[task_id] * scale

    def on_event(event: Event) -> None:
        if isinstance(event, TaskStarted):
            started[event.task_id] = clock()
        elif isinstance(event, TaskFinished):
            finished[event.task_id] = clock()

    orchestrator = Orchestrator(
        workers=[BENCH_WORKER],
        model=ScriptedModel(lambda _: "output", latency=latency),
        concurrency=None,
        assembly="concat",
        store=store,
    )
    plan = foreman_plan(workload)
    gc.collect()
    collector = _Collections()
    gc.callbacks.append(collector)
    begin = clock()
    try:
        await orchestrator.run("bench", plan=plan, on_event=on_event)
    finally:
        end = clock()
        gc.callbacks.remove(collector)
    origin = min(started.values())
    lags = [
        started[t] - max((finished[d] for d in deps), default=origin)
        for t, deps in workload.deps.items()
    ]
    return {
        "setup": (origin - begin) * 1e3,
        "start lag median": statistics.median(lags) * 1e3,
        "start lag max": max(lags) * 1e3,
        "model-call lag": statistics.median(called[t] - started[t] for t in started) * 1e3,
        "wrap-up": (end - max(finished.values())) * 1e3,
        "run total": (end - begin) * 1e3,
        "gc passes": collector.passes,
        "gc": collector.seconds * 1e3,
    }


class _Collections:
    """A ``gc.callbacks`` entry: how many collections ran, and their CPU time."""

    def __init__(self) -> None:
        self.passes = 0
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.passes += 1
            self.seconds += time.thread_time() - self._began


async def report_phases(repeat: int, sqlite: bool) -> None:
    names = ["setup", "start lag median", "start lag max", "model-call lag", "wrap-up", "gc"]
    header = f"{'workload':<12} {'tasks':>5}" + "".join(f"{n + ' ms':>20}" for n in names)
    header += f"{'gc passes':>11}"
    print(header)
    print("-" * len(header))
    for workload in workloads().values():
        await phases(workload, 0.0, sqlite)  # warm-up
        runs = [await phases(workload, 1.0, sqlite) for _ in range(repeat)]
        cells = "".join(f"{statistics.median(r[n] for r in runs):>20.3f}" for n in names)
        passes = statistics.median(r["gc passes"] for r in runs)
        print(f"{workload.name:<12} {workload.size:>5}{cells}{passes:>11g}")


async def profile(workload: Workload, scale: float, top: int, sqlite: bool) -> None:
    await phases(workload, scale, sqlite)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    await phases(workload, scale, sqlite)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cprofile", metavar="WORKLOAD", choices=sorted(workloads()))
    parser.add_argument("--latency-scale", type=float, default=0.0, help="for --cprofile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sqlite", action="store_true", help="checkpoint to a temporary SQLite db")
    args = parser.parse_args(argv)
    if args.cprofile:
        asyncio.run(profile(workloads()[args.cprofile], args.latency_scale, args.top, args.sqlite))
    else:
        asyncio.run(report_phases(args.repeat, args.sqlite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
