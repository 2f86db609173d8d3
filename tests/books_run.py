"""One real run whose ledger has something of everything, for the stats and show tests.

The planner's first answer is not a plan (asked again), the researcher's own model fails
every attempt and its fallback model answers, a validator rejects the writer once (a
revision and a second review), and synthesis ends it. Each model has its own price
(``PRICES``, dollars per million tokens), so a cost summed at the wrong model shows.
"""

from __future__ import annotations

from foreman import Orchestrator
from foreman.errors import ProviderServerError
from foreman.results import RunResult
from foreman.store.base import Store
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, TrackingModel, plan_of, task, worker

#: ``FOREMAN_PRICES`` for the run's models: [input, output] dollars per million tokens.
PRICES = '{"boss": [1, 2], "primary": [3, 4], "backup": [5, 6], "judge": [7, 8]}'
PRICE = {"boss": (1, 2), "primary": (3, 4), "backup": (5, 6), "judge": (7, 8)}

PLAN = plan_of(task("t1", "researcher"), task("t2", "writer", "t1"))
REJECT = '{"approved": false, "reasons": ["too short"]}'
APPROVE = '{"approved": true, "reasons": []}'


class Models:
    """The run's models, kept so tests can sum what each one answered."""

    def __init__(self) -> None:
        self.boss = TrackingModel(Script(["not a plan", PLAN], synthesis="FINAL"), name="boss")
        self.primary = ScriptedModel(lambda _: ProviderServerError("on fire"), name="primary")
        self.backup = TrackingModel(Script(), name="backup")
        self.judge = TrackingModel(Script(review={"do t2": [REJECT, APPROVE]}), name="judge")


async def books_run(store: Store, **options) -> tuple[RunResult, Models]:
    """Run the scenario into ``store``; ``options`` go to the Orchestrator."""
    models = Models()
    team = Registry(
        [
            worker("researcher", model="primary", fallback_model="backup"),
            worker("writer"),
            worker("judge", model="judge"),
        ]
    )
    orchestrator = Orchestrator(
        team,
        model=models.boss,
        models={"primary": models.primary, "backup": models.backup, "judge": models.judge},
        store=store,
        validator="judge",
        retry=NO_DELAY,
        **options,
    )
    result = await orchestrator.run("write about TLS")
    return result, models
