"""A run's books: tokens, dollars and calls summed from its ledger records."""

from __future__ import annotations

from collections.abc import Container, Iterable

from pydantic import BaseModel, Field

from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.models.pricing import first_price


def price_now(record: CallRecord, unpriced: Container[str]) -> float | None:
    """A call's dollars as the books count them: its own price, else (it had none when it
    was made) today's, if its model has one (``FOREMAN_PRICES`` set since). A model in
    ``unpriced`` is known to have none: not looked up again for every record."""
    price = record.cost_usd
    if price is None and record.usage.total_tokens and record.model not in unpriced:
        price = first_price((record.model,), record.usage)
    return price


def priced_now(records: list[CallRecord]) -> list[CallRecord]:
    """``records`` each with ``price_now``, so the rows a view lists add up to the total
    it shows under them."""
    unpriced: set[str] = set()
    shown = []
    for record in records:
        price = price_now(record, unpriced)
        if price is None:
            if record.usage.total_tokens:
                unpriced.add(record.model)
        elif record.cost_usd is None:
            record = record.model_copy(update={"cost_usd": price})
        shown.append(record)
    return shown


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
        # Token counts summed as numbers, one ``Usage`` at the end (not one per record).
        spent, dollars, unpriced, calls = [0, 0, 0, 0], 0.0, dict[str, None](), 0
        for record in records:
            calls += 1
            usage = record.usage
            spent[0] += usage.input_tokens
            spent[1] += usage.output_tokens
            spent[2] += usage.cache_read_tokens
            spent[3] += usage.cache_write_tokens
            price = price_now(record, unpriced)
            if price is not None:
                dollars += price
            elif usage.total_tokens:
                unpriced[record.model] = None
        i, o, r, w = spent
        return cls(
            usage=Usage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w),
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
