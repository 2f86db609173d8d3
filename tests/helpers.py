"""Shared test helpers: plans in one line, and a scripted model that answers per request kind.

``Script`` is a function script for ``foreman.testing.ScriptedModel``: it recognises the
planner call (by its order-constrained output schema), the synthesis call, quality-gate
reviews and worker calls (by the task instructions they carry), and answers each from what
the test configured. Everything it was asked is kept, so tests can assert on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

from foreman.engine.prompts import REVIEW_SUFFIX, SYNTHESIS_SYSTEM
from foreman.events import Event
from foreman.models.base import ModelRequest, ModelResponse
from foreman.plan.schema import Plan, Task
from foreman.testing import ScriptedModel
from foreman.workers.spec import RetryPolicy, Worker

#: No waiting between retries, so failure-policy tests stay fast.
NO_DELAY = RetryPolicy(initial_delay=0, jitter=False)

Answer = str | ModelResponse | BaseException | Callable[[ModelRequest], Any]


def task(task_id: str, worker: str = "researcher", *deps: str, **fields: Any) -> Task:
    """A task whose instructions are ``do <id>``, which is how ``Script`` recognises it."""
    fields.setdefault("instructions", f"do {task_id}")
    return Task(id=task_id, worker=worker, depends_on=list(deps), **fields)


def plan_of(*tasks: Task) -> Plan:
    return Plan(tasks=list(tasks))


def plan_json(plan: Plan) -> str:
    return plan.model_dump_json(exclude_none=True)


def worker(name: str, **fields: Any) -> Worker:
    """A test worker with a recognisable system prompt and no retry delay."""
    fields.setdefault("description", f"The {name} test worker.")
    fields.setdefault("system_prompt", f"You are the {name} worker.")
    fields.setdefault("retry", NO_DELAY)
    return Worker(name=name, **fields)


# --- recognising requests ----------------------------------------------------------------


def is_planner(request: ModelRequest) -> bool:
    schema = request.output_schema or {}
    return "tasks" in schema.get("properties", {})


def is_synthesis(request: ModelRequest) -> bool:
    return request.system == SYNTHESIS_SYSTEM


def is_review(request: ModelRequest) -> bool:
    return (request.system or "").endswith(REVIEW_SUFFIX)


def payload(request: ModelRequest) -> dict[str, Any]:
    """The JSON object in the request's (single) user message."""
    return json.loads(request.messages[0].content)


def instructions_of(request: ModelRequest) -> str:
    """The task instructions a worker or review request is about (revision text removed)."""
    text = payload(request)["instructions"]
    return text.split(" A reviewer rejected", 1)[0]


def worker_requests(model: ScriptedModel, instructions: str | None = None) -> list[ModelRequest]:
    """Worker calls the model received (not planner, synthesis or review calls)."""
    found = [
        r
        for r in model.requests
        if not (is_planner(r) or is_synthesis(r) or is_review(r))
        and (instructions is None or instructions_of(r) == instructions)
    ]
    return found


# --- the scripted answers ----------------------------------------------------------------


class Script:
    """A ``ScriptedModel`` function script answering each kind of request.

    ``plan``: a Plan, or a list of successive planner answers (Plan, raw text, exception).
    ``tasks``: instructions -> answer, or a list of successive answers (the last repeats).
    An answer may be a callable of the request. Unlisted tasks answer ``out:<instructions>``.
    ``review``: the same for quality-gate reviews, keyed by the reviewed task's instructions
    (or a single answer/list for every review). ``synthesis``: the synthesis answer.
    """

    def __init__(
        self,
        plan: Plan | Iterable[Plan | str | BaseException] | None = None,
        *,
        tasks: dict[str, Answer | list[Answer]] | None = None,
        review: Answer | list[Answer] | dict[str, Answer | list[Answer]] | None = None,
        synthesis: Answer = "FINAL",
    ) -> None:
        if plan is None or isinstance(plan, Plan):
            self._plans: list[Any] = [plan]
        else:
            self._plans = list(plan)
        self.tasks = dict(tasks or {})
        self.review = review
        self.synthesis = synthesis
        self._calls: dict[str, int] = {}

    def __call__(self, request: ModelRequest) -> Any:
        if is_planner(request):
            answer = self._nth("plan", self._plans)
            if answer is None:
                raise AssertionError("the planner was called but the test gave no plan")
            return plan_json(answer) if isinstance(answer, Plan) else answer
        if is_synthesis(request):
            return _resolve(self.synthesis, request)
        key = instructions_of(request)
        if is_review(request):
            answers = self.review
            if isinstance(answers, dict):
                answers = answers.get(key, '{"approved": true, "reasons": []}')
            if answers is None:
                answers = '{"approved": true, "reasons": []}'
            return _resolve(self._nth("review:" + key, answers), request)
        answers = self.tasks.get(key, f"out:{key}")
        return _resolve(self._nth(key, answers), request)

    def _nth(self, key: str, answers: Any) -> Any:
        if not isinstance(answers, list):
            return answers
        index = self._calls.get(key, 0)
        self._calls[key] = index + 1
        return answers[min(index, len(answers) - 1)]


def _resolve(answer: Answer, request: ModelRequest) -> Any:
    if callable(answer) and not isinstance(answer, BaseException | ModelResponse):
        return answer(request)
    return answer


class TrackingModel(ScriptedModel):
    """A ScriptedModel that records its answers and how many calls were in flight at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (request, response) for every call that answered.
        self.responses: list[tuple[ModelRequest, ModelResponse]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_worker: dict[str, int] = {}
        self.max_by_worker: dict[str, int] = {}

    async def complete(self, request: ModelRequest) -> ModelResponse:
        system = request.system or ""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        now = self.in_flight_by_worker.get(system, 0) + 1
        self.in_flight_by_worker[system] = now
        self.max_by_worker[system] = max(self.max_by_worker.get(system, 0), now)
        try:
            response = await super().complete(request)
            self.responses.append((request, response))
            return response
        finally:
            self.in_flight -= 1
            self.in_flight_by_worker[system] -= 1


def latency_by_instructions(latencies: dict[str, float]) -> Callable[[ModelRequest], float]:
    """A ScriptedModel latency function: seconds per task instructions, 0 for the rest."""

    def latency(request: ModelRequest) -> float:
        if is_planner(request) or is_synthesis(request):
            return 0.0
        return latencies.get(instructions_of(request), 0.0)

    return latency


async def collect(stream: Any, limit: float = 10.0) -> list[Event]:
    """Every event of an ``Orchestrator.stream``, failing (not hanging) after ``limit`` s."""
    events: list[Event] = []
    async with asyncio.timeout(limit):
        async for event in stream:
            events.append(event)
    return events


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def index_of(events: list[Any], kind: type, task_id: str) -> int:
    """Position of the first event of ``kind`` for ``task_id`` in ``events``."""
    for position, event in enumerate(events):
        if isinstance(event, kind) and getattr(event, "task_id", None) == task_id:
            return position
    raise AssertionError(f"no {kind.__name__} for {task_id} in {[e.type for e in events]}")


#: A team whose deployer is high risk: it always asks, and tries once.
HIGH_RISK_TEAM = """\
include_defaults: true
workers:
  - name: deployer
    description: Deploys to production.
    system_prompt: You deploy.
    risk: high
    retry: {max_attempts: 1}
"""
