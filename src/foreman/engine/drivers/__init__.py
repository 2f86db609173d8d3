"""Drivers: what moves a run from its request to its answer, inside its lifecycle.

``planned`` writes a plan up front and runs it as a DAG; ``delegating`` lets a
tool-calling orchestrator delegate to the workers turn by turn. Each driver takes the
``Execution`` (``engine.lifecycle``) and returns the run's result through it, so leases,
checkpoints, the ledger, budgets and cancellation behave the same whichever drives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from foreman.engine.drivers.delegating import drive_delegating
from foreman.engine.drivers.planned import drive_planned
from foreman.engine.lifecycle import Execution
from foreman.engine.settings import RunSettings
from foreman.results import RunResult

Driver = Callable[[Execution], Awaitable[RunResult]]


def driver_for(settings: RunSettings) -> Driver:
    """The driver a run's settings ask for."""
    return drive_delegating if settings.mode == "delegate" else drive_planned
