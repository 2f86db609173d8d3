"""Each router's accuracy and latency on the labelled set (tests/data/routing.jsonl).

    python bench/routers.py                    # embedding router + LLM router on the scripted model
    python bench/routers.py --local            # + the LLM router on the bundled SmolLM2
    python bench/routers.py --local --limit 60 # SmolLM2 on the first 60 tasks only

Every router routes every task of the set one at a time, as a delegating run does (a
planned run embeds a whole plan at once, which is faster per task). Latency is per task,
after a warm-up: the first call loads the embedder (or the local model) and embeds the
workers' profiles, which is reported apart as ``load``. The LLM router on the scripted
model answers ``researcher`` every time: its figure is the router's own overhead (prompt,
structured-output parsing, ledger-free), not an accuracy. ``unsure``: tasks no worker
matched confidently (the LLM answered ``none`` or never a valid name), counted as misses.
docs/benchmarks.md records the figures; tests/test_routing_accuracy.py holds the embedding
router to a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from foreman.embeddings import LocalEmbedder
from foreman.routing import EmbeddingRouter, LLMRouter, Router, RoutingError
from foreman.testing import ScriptedModel
from foreman.workers.registry import Registry

SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "routing.jsonl"


async def measure(name: str, router: Router, rows: list[dict[str, str]]) -> dict[str, object]:
    begin = time.perf_counter()
    await router.route("warm up: load the model and the workers' profiles")
    load = time.perf_counter() - begin
    latencies, right, unsure = [], 0, 0
    for row in rows:
        begin = time.perf_counter()
        try:
            route = await router.route(row["description"])
        except RoutingError:  # unsure, and no fallback: counts as a miss
            route = None
        latencies.append((time.perf_counter() - begin) * 1000)
        right += route is not None and route.worker == row["worker"]
        unsure += route is None or route.fallback
    latencies.sort()
    return {
        "router": name,
        "tasks": len(rows),
        "accuracy": right / len(rows),
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "load_s": load,
        "fallbacks": unsure,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="also the LLM router on SmolLM2")
    parser.add_argument("--limit", type=int, help="tasks of the set for the local model")
    parser.add_argument("--json", action="store_true", help="one JSON line per router")
    args = parser.parse_args()
    rows = [json.loads(line) for line in SET.read_text().splitlines() if line.strip()]
    team = Registry.default()
    bare = Registry([w.model_copy(update={"examples": ()}) for w in team])
    runs = [
        (
            "embedding (MiniLM, descriptions + examples)",
            EmbeddingRouter(team, LocalEmbedder()),
            rows,
        ),
        ("embedding (MiniLM, descriptions only)", EmbeddingRouter(bare, LocalEmbedder()), rows),
        (
            "llm (scripted: overhead only)",
            LLMRouter(team, ScriptedModel(lambda r: '{"worker": "researcher"}')),
            rows,
        ),
    ]
    if args.local:
        from foreman.models import load_model

        runs.append(
            ("llm (SmolLM2-135M, local)", LLMRouter(team, load_model("local")), rows[: args.limit])
        )
    print(
        f"{'router':46} {'tasks':>5} {'accuracy':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'load s':>7} {'unsure':>6}"
    )
    for name, router, subset in runs:
        figures = await measure(name, router, subset)
        if args.json:
            print(json.dumps(figures))
            continue
        print(
            f"{name:46} {figures['tasks']:>5} {figures['accuracy']:>8.1%} "
            f"{figures['p50_ms']:>8.2f} {figures['p95_ms']:>8.2f} {figures['load_s']:>7.2f} "
            f"{figures['fallbacks']:>6}"
        )


if __name__ == "__main__":
    asyncio.run(main())
