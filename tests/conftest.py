"""Every test gets its own run store: nothing ever touches the user's ~/.local/share."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_run_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_DB", str(tmp_path / "foreman-test.db"))
