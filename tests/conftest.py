"""Every test gets its own run store: nothing ever touches the user's ~/.local/share.
And no child process a test started outlives it, whether the test passed or failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processes import kill_leftovers


@pytest.fixture(autouse=True)
def private_run_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_DB", str(tmp_path / "foreman-test.db"))


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Kill any child started through tests/processes.py that is still running at teardown."""
    yield
    kill_leftovers()
