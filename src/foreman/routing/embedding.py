"""The embedding router: no model call, one embedding and a few dot products per task."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from foreman.embeddings.base import Embedder, cosine
from foreman.models.retry import CallLog, OnRetry
from foreman.routing.base import Route, Router
from foreman.workers.registry import Registry

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    import numpy as np

#: Below this cosine similarity to every worker's description and examples a task is no
#: confident match (set from the labelled set: docs/routing.md shows the distribution).
DEFAULT_MIN_SCORE = 0.2


class EmbeddingRouter(Router):
    """Routes a task to the worker whose description or one of whose ``examples`` is
    most similar to it (cosine of the embedder's vectors; the best of each worker's
    texts counts, so one close example is enough). Deterministic for one embedder.

    The workers' texts are embedded once, at the first task.
    """

    kind = "embedding"

    def __init__(
        self,
        registry: Registry,
        embedder: Embedder,
        *,
        fallback: str | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
    ) -> None:
        super().__init__(registry, fallback=fallback)
        self.embedder = embedder
        self.min_score = min_score
        self._profiles: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self._lock = asyncio.Lock()

    async def route(
        self,
        task: str,
        *,
        default: str | None = None,
        scope: CallLog | None = None,
        on_retry: OnRetry | None = None,
    ) -> Route:
        return (await self.route_many([task], defaults=[default]))[0]

    async def route_many(
        self, tasks: Sequence[str], *, defaults: Sequence[str | None] | None = None
    ) -> list[Route]:
        """``route`` for several tasks with one embedding call."""
        import numpy as np

        names, owners, keys = await self.profiles()
        if not tasks:
            return []
        scores = cosine(await self.embedder.embed(list(tasks)), keys)
        routes = []
        for i, row in enumerate(scores):
            best_per_worker = np.full(len(names), -1.0, dtype=np.float32)
            np.maximum.at(best_per_worker, owners, row)
            best = int(np.argmax(best_per_worker))
            score = round(float(best_per_worker[best]), 4)
            if score >= self.min_score:
                routes.append(Route(worker=names[best], router=self.kind, score=score))
            else:
                default = defaults[i] if defaults else None
                routes.append(self.unsure(names[best], default, score))
        return routes

    async def profiles(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Candidate names, the worker index of each text, and the texts' vectors."""
        import numpy as np

        async with self._lock:
            if self._profiles is None:
                names, owners, texts = [], [], []
                for index, worker in enumerate(self.candidates()):
                    names.append(worker.name)
                    for text in (worker.description, *worker.examples):
                        owners.append(index)
                        texts.append(text)
                vectors = await self.embedder.embed(texts)
                self._profiles = (names, np.array(owners, dtype=np.int64), vectors)
            return self._profiles
