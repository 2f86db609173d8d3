"""The store conformance suite: what foreman relies on from a ``Store``, as pytest tests.

Subclass ``StoreConformance`` in a test module (its name must start with ``Test``) and say
how to make a fresh, empty store; pytest then runs every check against it::

    from foreman.testing.store_conformance import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, tmp_path):  # may be ``async def``
            return MyStore(tmp_path / "runs.db")

        def reopen_store(self, tmp_path):  # optional: the durability checks
            return MyStore(tmp_path / "runs.db")

Each test runs in its own ``asyncio.run``: plain pytest is enough, no plugin or event-loop
setting. The suite imports pytest, which foreman does not depend on: install it where you
run the suite (``pip install foreman[test]``). What a store must implement is every
abstract method of ``foreman.store.Store`` (the call ledger included: a run's books are
its sum); ``aclose`` and ``reopen_store`` are optional. docs/stores.md walks through it.
"""

import pytest

# The checks live in this package, not in the user's test module: without this, a failed
# ``assert`` would say nothing about the values it compared.
pytest.register_assert_rewrite(
    *(
        f"{__name__}.{module}"
        for module in (
            "approvals",
            "books",
            "leases",
            "ledger",
            "memories",
            "nesting",
            "plans",
            "runs",
            "tools",
        )
    )
)

from foreman.testing.store_conformance._harness import store_test  # noqa: E402
from foreman.testing.store_conformance.approvals import ApprovalTests  # noqa: E402
from foreman.testing.store_conformance.books import BooksTests  # noqa: E402
from foreman.testing.store_conformance.leases import LeaseTests  # noqa: E402
from foreman.testing.store_conformance.ledger import LedgerTests  # noqa: E402
from foreman.testing.store_conformance.memories import MemoryTests  # noqa: E402
from foreman.testing.store_conformance.nesting import NestingTests  # noqa: E402
from foreman.testing.store_conformance.plans import PlanTests  # noqa: E402
from foreman.testing.store_conformance.runs import RunTests  # noqa: E402
from foreman.testing.store_conformance.tools import ToolJournalTests  # noqa: E402


class StoreConformance(
    RunTests,
    PlanTests,
    LeaseTests,
    ApprovalTests,
    LedgerTests,
    BooksTests,
    NestingTests,
    MemoryTests,
    ToolJournalTests,
):
    """Every conformance check; subclass it as ``Test...`` and define ``make_store``.

    To leave one check out (say, a store without leases on purpose), override that test
    method in the subclass with one that calls ``pytest.skip`` and says why.
    """


__all__ = [
    "ApprovalTests",
    "BooksTests",
    "LeaseTests",
    "LedgerTests",
    "MemoryTests",
    "NestingTests",
    "PlanTests",
    "RunTests",
    "StoreConformance",
    "ToolJournalTests",
    "store_test",
]
