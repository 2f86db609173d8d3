"""How ``foreman show`` presents a run's plan versions (replanning: docs/replanning.md)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from foreman.cli.text import safe_text
from foreman.store.base import PlanVersion


def versions_table(versions: list[PlanVersion]) -> Table:
    """One row per version: why it was written, and the tasks it added, changed, dropped."""
    table = Table(title="Plan versions", title_justify="left", title_style="bold")
    for column in ("version", "reason", "added", "changed", "dropped", "tasks"):
        table.add_column(column, overflow="fold")
    for version in versions:
        changes = version.changes
        table.add_row(
            str(version.version),
            safe_text(version.reason) if version.reason is not None else Text("first plan", "dim"),
            safe_text(", ".join(changes.added) or "-"),
            safe_text(", ".join(changes.changed) or "-"),
            safe_text(", ".join(changes.dropped) or "-"),
            str(len(version.plan.tasks)),
        )
    return table


def versions_json(versions: list[PlanVersion]) -> list[dict[str, Any]]:
    """``show --json``'s ``plan_versions``: each version as stored (plan, reason, changes)."""
    return [version.model_dump(mode="json") for version in versions]
