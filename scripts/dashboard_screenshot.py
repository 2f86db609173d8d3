"""The README's screenshot of ``foreman ui`` (docs/img/dashboard.png), taken by the browser
tests' own setup: runs made by the real CLI on the scripted model (tests/web_runs.py), the
real ``foreman ui`` process and Debian's chromium (foreman.testing.dashboard).

    PYTHONPATH=src python scripts/dashboard_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cli_runs import plan  # noqa: E402
from foreman.testing.dashboard import browser, dashboard  # noqa: E402
from web_runs import Runs  # noqa: E402

SPEC = {
    "plan": plan(
        ("t1", "researcher", []),
        ("t2", "analyst", ["t1"]),
        ("t3", "researcher", ["t1"]),
        ("t4", "analyst", ["t1"]),
        ("t5", "writer", ["t2", "t3", "t4"]),
    ),
    "latency": {"do t1": 0.4, "do t2": 0.9, "do t3": 0.6, "do t4": 1.2, "do t5": 0.5},
}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img" / "dashboard.png"
    os.environ["FOREMAN_PRICES"] = '{"scripted": [3, 15]}'  # dollars per million tokens
    with tempfile.TemporaryDirectory() as folder:
        runs = Runs(Path(folder), SPEC)
        for request in ("Compare the three cloud providers' pricing for our workload",):
            done = runs.run("run", request)
            assert done.returncode == 0, done.stderr
        with dashboard(runs.db) as base, browser() as chromium:
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(base)
            page.locator("#runs tbody tr").first.click()
            page.locator("#timeline").wait_for()
            page.wait_for_selector("#live.on")
            page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
