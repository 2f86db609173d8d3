"""The labelled routing set (tests/data/routing.jsonl) and the embedding router's floor on it.

The bundled embedder is deterministic (same model, same vectors), so its accuracy on the
set is a fixed number: 71.7% when measured (docs/routing.md). The floor leaves room for a
few borderline tasks that another CPU's arithmetic might tip, no more: a change to the
default team's descriptions or examples, or to the embedder, that loses accuracy fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from foreman.embeddings import LocalEmbedder
from foreman.routing import EmbeddingRouter
from foreman.workers.registry import Registry

SET = Path(__file__).with_name("data") / "routing.jsonl"
FLOOR = 0.70


def labelled() -> list[dict[str, str]]:
    return [json.loads(line) for line in SET.read_text().splitlines() if line.strip()]


def test_the_set_has_150_distinct_descriptions_of_the_default_team() -> None:
    rows = labelled()
    assert len(rows) >= 150
    assert len({row["description"] for row in rows}) == len(rows)
    per_worker = Counter(row["worker"] for row in rows)
    assert set(per_worker) == set(Registry.default().names())
    assert min(per_worker.values()) >= 25  # every worker well represented


async def test_the_embedding_router_stays_above_its_floor_on_the_labelled_set() -> None:
    rows = labelled()
    router = EmbeddingRouter(Registry.default(), LocalEmbedder())
    routes = await router.route_many([row["description"] for row in rows])
    right = sum(route.worker == row["worker"] for route, row in zip(routes, rows, strict=True))
    assert right / len(rows) >= FLOOR, f"{right}/{len(rows)} routed right"
