"""A run's books: tokens, dollars and calls summed from its ledger records."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.models.pricing import cost


class Books(BaseModel):
    """What a set of calls spent. ``cost_usd`` is None when any model in ``unpriced``
    spent tokens without a known price: a total that leaves them out would be a lie."""

    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    unpriced: list[str] = Field(default_factory=list)
    calls: int = 0

    @classmethod
    def of(cls, records: Iterable[CallRecord]) -> Books:
        """The books of ``records``; a call that had no price when it was made is priced
        now if one is known (``FOREMAN_PRICES`` set since)."""
        usage, dollars, unpriced, calls = Usage(), 0.0, dict[str, None](), 0
        for record in records:
            calls += 1
            usage += record.usage
            price = record.cost_usd
            if price is None and record.usage.total_tokens:
                price = cost(record.model, record.usage)
            if price is not None:
                dollars += price
            elif record.usage.total_tokens:
                unpriced[record.model] = None
        return cls(
            usage=usage,
            cost_usd=None if unpriced else dollars,
            unpriced=list(unpriced),
            calls=calls,
        )

    def __add__(self, other: Books) -> Books:
        unpriced = list(dict.fromkeys([*self.unpriced, *other.unpriced]))
        dollars = (
            None
            if unpriced or self.cost_usd is None or other.cost_usd is None
            else self.cost_usd + other.cost_usd
        )
        return Books(
            usage=self.usage + other.usage,
            cost_usd=dollars,
            unpriced=unpriced,
            calls=self.calls + other.calls,
        )
