"""How soon a change made by another process shows on the dashboard (docs/benchmarks.md).

    PYTHONPATH=src python bench/bench_ui_live.py [--writes 20]

A ``foreman ui`` process serves a fresh store; headless chromium (foreman.testing.dashboard,
as the browser tests) shows the runs list; another process creates runs one by one, at
irregular intervals, printing the moment each commit returned. The page records, with a
MutationObserver, the moment each new row appears. Latency = row shown - commit returned:
the poll interval, the server-sent event, the page's read of /api/runs and its redraw.
Same machine, same clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from foreman.testing.dashboard import browser, dashboard

WRITER = """
import asyncio, json, random, sys, time
from foreman.store.base import RunRecord
from foreman.store.sqlite import SQLiteStore

async def main(path, count):
    store = SQLiteStore(path)
    try:
        for index in range(count):
            await asyncio.sleep(0.4 + random.random() * 0.6)
            await store.create_run(RunRecord(run_id=f"bench-{index:03d}", request=f"r{index}"))
            print(json.dumps({"index": index, "at": time.time()}), flush=True)
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

OBSERVE = """
() => {
  window.__seen = [];
  const count = () => document.querySelectorAll('#runs tbody tr').length;
  let last = count();
  new MutationObserver(() => {
    const now = count();
    if (now !== last) { window.__seen.push([now, Date.now() / 1000]); last = now; }
  }).observe(document.getElementById('main'), {childList: true, subtree: true});
}
"""


def measure(writes: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        seed = subprocess.run(
            [sys.executable, "-c", WRITER, str(db), "1"], capture_output=True, check=True
        )
        assert seed.returncode == 0  # the store exists, with one run shown at start
        with dashboard(db) as base, browser() as chromium:
            page = chromium.new_page()
            page.goto(base)
            page.locator("#runs tbody tr").first.wait_for()
            page.wait_for_selector("#live.on")
            page.evaluate(OBSERVE)
            done = subprocess.run(
                [sys.executable, "-c", WRITER.replace("bench-", "live-"), str(db), str(writes)],
                capture_output=True,
                text=True,
                check=True,
            )
            committed = [json.loads(line)["at"] for line in done.stdout.splitlines()]
            page.wait_for_function(f"window.__seen.some(([n]) => n >= {writes + 1})")
            seen = {count: at for count, at in page.evaluate("window.__seen")}
    # Row count k + 2 appears when write k (0-based) is shown (one seeded run before).
    return [seen[index + 2] - at for index, at in enumerate(committed) if index + 2 in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20)
    latencies = sorted(measure(parser.parse_args().writes))
    print(
        f"{len(latencies)} changes: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms (commit in another process -> row on the page)"
    )


if __name__ == "__main__":
    main()
