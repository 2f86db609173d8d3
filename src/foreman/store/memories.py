"""Memory as a store keeps it: workers' outputs with their embeddings (docs/memory.md).

Entries belong to no run's lifecycle: deleting a run leaves what it taught, and a store
keeps at most a given number of entries, evicting the oldest. Similarity search is one
matrix product over the entries of the query's embedder (vectors of different embedders
are never compared); a store only has to add, list, delete and clear.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    pass


class MemoryEntry(BaseModel):
    """One remembered output: who wrote it, in which run and task, and its vector."""

    memory_id: int = Field(0, description="Given by the store when the entry is added.")
    run_id: str
    task_id: str
    worker: str
    text: str
    #: The embedder that made ``vector`` (``Embedder.name``).
    embedder: str
    vector: list[float] = Field(default_factory=list, repr=False)
    created_at: float = Field(default_factory=time.time)


class MemoryHit(BaseModel):
    """An entry found by similarity, and how similar (cosine, -1 to 1)."""

    entry: MemoryEntry
    score: float


def best_matches(
    entries: list[MemoryEntry], vector: list[float], top_k: int, min_score: float
) -> list[MemoryHit]:
    """The ``top_k`` entries most similar to ``vector`` (unit vectors), best first, at
    least ``min_score`` similar; ties go to the newer entry."""
    import numpy as np

    entries = [e for e in entries if len(e.vector) == len(vector)]
    if not entries or top_k <= 0:
        return []
    scores = np.asarray([e.vector for e in entries], dtype=np.float32) @ np.asarray(
        vector, dtype=np.float32
    )
    order = sorted(range(len(entries)), key=lambda i: (-scores[i], -entries[i].memory_id))
    hits = [MemoryHit(entry=entries[i], score=round(float(scores[i]), 4)) for i in order]
    return [hit for hit in hits if hit.score >= min_score][:top_k]
