"""How long ``foreman plan`` takes to read the ledger's history, by ledger length.

    python bench/bench_history.py               # 200,000 calls (200 runs of 1,000)
    python bench/bench_history.py --runs 20

Builds a SQLite store of ``--runs`` runs of 1,000 answered calls each (8 workers on two
models), then times reading the whole ledger (``list_calls()``, what the estimator did
before) against ``recent_calls(HISTORY_CALLS)`` (what it does now: the newest calls of each
purpose, worker and model, one indexed query per group).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from foreman.engine.estimate import HISTORY_CALLS
from foreman.store.sqlite import SQLiteStore
from foreman.testing.store_conformance.records import call, run_record

MODELS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")


async def bench(runs: int, directory: Path) -> None:
    store = SQLiteStore(directory / "ledger.db")
    try:
        for run in range(runs):
            run_id = f"r{run}"
            await store.create_run(run_record(run_id))
            calls = [
                call(
                    f"c{n}",
                    run_id,
                    worker=f"w{n % 8}",
                    model=MODELS[n % 3 == 0],
                    started_at=run * 1000.0 + n,
                )
                for n in range(1000)
            ]
            await store.save_calls(run_id, calls)
        for name, read in (
            ("list_calls()", store.list_calls),
            (f"recent_calls({HISTORY_CALLS})", lambda: store.recent_calls(HISTORY_CALLS)),
        ):
            start = time.perf_counter()
            found = await read()
            took = time.perf_counter() - start
            print(f"{runs * 1000:>9,} calls  {name:<20} {len(found):>9,} rows  {took:7.3f} s")
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs of 1,000 calls each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(bench(args.runs, Path(directory)))


if __name__ == "__main__":
    main()
