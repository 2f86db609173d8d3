"""Driving the dashboard in a real browser: a ``foreman ui`` process and Debian's chromium.

Shared by the browser tests (tests/test_web_browser.py) and the README's screenshot
(scripts/dashboard_screenshot.py), so the picture shows what the tests check. Playwright
drives the system's chromium (``CHROMIUM``, or ``FOREMAN_CHROMIUM``): no browser is ever
downloaded, and the page needs nothing but the server it came from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The browser: Debian's ``chromium`` package.
CHROMIUM = os.environ.get("FOREMAN_CHROMIUM", "/usr/bin/chromium")
#: Headless, and nothing that would reach the network on its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install 'foreman[test]')"
    return None


@contextmanager
def browser() -> Iterator[object]:
    """A headless chromium (``playwright.sync_api.Browser``), closed afterwards."""
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def dashboard(db: Path, *, token: str | None = None, timeout: float = 30.0) -> Iterator[str]:
    """``foreman ui`` over ``db`` on a free port, in its own process; yields its address
    (``http://127.0.0.1:PORT``, no trailing slash)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FOREMAN_UI_TOKEN", None)
    command = [sys.executable, "-m", "foreman", "ui", "--port", "0", "--db", str(db)]
    if token:
        command += ["--token", token]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("foreman ui: "):
            server.kill()
            raise RuntimeError(f"foreman ui did not start: {line}{server.communicate()[1]}")
        yield line.split()[2].split("?")[0].rstrip("/")
    finally:
        server.terminate()
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
