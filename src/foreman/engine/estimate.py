"""Cost before it is spent: what a plan will most likely cost and how long it will take.

Each step (planning, every task with its reviews, synthesis) is estimated from the call
ledger's history for that worker (or step) on that model: the median tokens and latency of
its answered calls, times the calls it typically needs (retries, revisions and reviews
included). With no history, typical values stand in, and say so:

- input tokens: the characters the call would send, at ``CHARS_PER_TOKEN``, a task's
  dependencies counted at their own estimated output;
- output tokens: ``TYPICAL_OUTPUT_SHARE`` of the worker's ``max_tokens`` (a review:
  ``TYPICAL_REVIEW_TOKENS``; planning: the plan's own JSON);
- one call per step; seconds: ``TYPICAL_CALL_SECONDS`` plus the output at
  ``TYPICAL_TOKENS_PER_SECOND`` (``LOCAL_TOKENS_PER_SECOND`` for a local model).

Dollars come from ``models.pricing.cost`` at each step's own model (``FOREMAN_PRICES``
included); a step on a model with no known price has no cost, and neither has the plan.
The plan's time is planning, then the DAG scheduled as the engine would (concurrency and
per-worker limits), then synthesis; its cost is the sum of its steps.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field

from foreman.engine.assembly import SYNTHESISER
from foreman.engine.prompts import REVIEW_SUFFIX, SYNTHESIS_SYSTEM, worker_input
from foreman.ledger.recorder import CHARS_PER_TOKEN
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus
from foreman.models.base import Usage
from foreman.models.pricing import cost, priced
from foreman.plan.prompts import planner_system_prompt
from foreman.plan.schema import Plan, Task
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

#: Share of a worker's ``max_tokens`` a typical answer uses (no history to go by).
TYPICAL_OUTPUT_SHARE = 0.5
#: Output tokens of a typical review verdict: ``{"approved": ..., "reasons": [...]}``.
TYPICAL_REVIEW_TOKENS = 100
#: Seconds a provider call takes before its first token (connection, queue, prompt).
TYPICAL_CALL_SECONDS = 1.0
#: Output tokens per second of a typical provider model, and of the bundled local model.
TYPICAL_TOKENS_PER_SECOND = 50.0
LOCAL_TOKENS_PER_SECOND = 20.0
#: Most recent calls per worker and model the history keeps: behaviour and prices drift.
HISTORY_CALLS = 500

TYPICAL = "typical"


class StepEstimate(BaseModel):
    """One step's expected calls, tokens, dollars and seconds, and what they rest on.

    ``cost_usd`` is None when the model has no known price. ``basis`` says where the
    numbers come from: ``"history: 12 calls"`` or ``"typical"`` (see the module docstring).
    """

    model: str
    calls: float = Field(description="Expected model calls, retries and reviews included.")
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    seconds: float
    basis: str

    @property
    def from_history(self) -> bool:
        """Every kind of call in the step is estimated from history (a task's reviews
        too): ``"history: 1 call; review typical"`` is not."""
        return not any(part.endswith(TYPICAL) for part in self.basis.split("; "))


class TaskEstimate(StepEstimate):
    """A task's estimate: its worker's calls and, with a validator, their reviews."""

    task_id: str
    worker: str


class PlanEstimate(BaseModel):
    """A plan's estimate: per task, planning, synthesis, and the totals.

    ``seconds`` is planning + the DAG's schedule + synthesis; ``cost_usd`` is the sum of
    every step, None when any step's model has no price (``unpriced`` names them).
    """

    tasks: list[TaskEstimate]
    planning: StepEstimate | None = None
    synthesis: StepEstimate | None = None
    cost_usd: float | None
    seconds: float
    unpriced: list[str] = Field(default_factory=list)

    def task(self, task_id: str) -> TaskEstimate:
        return next(task for task in self.tasks if task.task_id == task_id)


@dataclass(frozen=True)
class HistoryStats:
    """What history says about one kind of call (purpose, worker, model)."""

    answered: int  # answered calls the medians come from
    usage: Usage  # median tokens of an answered call
    latency: float  # median seconds of an answered call
    per_parent: float  # mean attempts per task (planning, synthesis), failures included

    @property
    def basis(self) -> str:
        return f"history: {self.answered} call{'s' if self.answered != 1 else ''}"


Key = tuple[str, str | None, str]  # purpose, worker, model


class History:
    """The ledger's calls grouped by purpose, worker and model; ``stats`` per group."""

    def __init__(self, records: Iterable[CallRecord]) -> None:
        groups: dict[Key, list[CallRecord]] = defaultdict(list)
        for record in records:
            if record.status is not CallStatus.started and record.purpose is not CallPurpose.replay:
                groups[(record.purpose.value, record.worker, record.model)].append(record)
        self._stats = {key: _stats(calls[-HISTORY_CALLS:]) for key, calls in groups.items()}

    def stats(self, purpose: CallPurpose, worker: str | None, model: str) -> HistoryStats | None:
        return self._stats.get((purpose.value, worker, model))


def _stats(calls: list[CallRecord]) -> HistoryStats | None:
    answered = [call for call in calls if call.status is CallStatus.ok]
    if not answered:
        return None
    per_parent = Counter((call.run_id, call.parent) for call in calls)

    def median(tokens: Callable[[Usage], int]) -> int:
        return round(statistics.median(tokens(call.usage) for call in answered))

    usage = Usage(
        input_tokens=median(lambda u: u.input_tokens),
        output_tokens=median(lambda u: u.output_tokens),
        cache_read_tokens=median(lambda u: u.cache_read_tokens),
        cache_write_tokens=median(lambda u: u.cache_write_tokens),
    )
    return HistoryStats(
        answered=len(answered),
        usage=usage,
        latency=statistics.median(call.latency for call in answered),
        per_parent=len(calls) / len(per_parent),
    )


@dataclass
class _Part:
    """One kind of call within a step: its model, tokens per call and calls."""

    model: str
    usage: Usage
    calls: float
    seconds: float
    basis: str

    @property
    def cost_usd(self) -> float | None:
        return cost(self.model, _times(self.usage, self.calls))


class Estimator:
    """Estimates plans for one orchestrator's team, models and settings from ``history``.

    ``model_of(name)`` is the name the ledger records for a worker's model name (``None``:
    the default model); ``planner_model`` and ``default_model`` are such names too.
    """

    def __init__(
        self,
        registry: Registry,
        history: History,
        *,
        model_of: Callable[[str | None], str],
        planner_model: str,
        default_model: str,
        validator: Worker | None = None,
        synthesis: bool = True,
        concurrency: int | None = None,
        max_tasks: int = 8,
    ) -> None:
        self.registry = registry
        self.history = history
        self.model_of = model_of
        self.planner_model = planner_model
        self.default_model = default_model
        self.validator = validator
        self.synthesis = synthesis
        self.concurrency = concurrency
        self.max_tasks = max_tasks

    def plan(self, plan: Plan, request: str = "") -> PlanEstimate:
        """The estimate of planning ``plan`` for ``request``, running it and synthesising."""
        tasks: dict[str, TaskEstimate] = {}
        answers: dict[str, int] = {}  # output tokens of each task's answer: its dependants' input
        for task in plan.topological_order():
            deps = {dep: answers[dep] for dep in task.depends_on}
            tasks[task.id], answers[task.id] = self._task(task, deps)
        ordered = [tasks[task.id] for task in plan.tasks]
        planning = self._planning(plan, request)
        synthesis = self._synthesis(plan, request, sum(answers.values()))
        steps: list[StepEstimate] = [planning, *ordered] + ([synthesis] if synthesis else [])
        unpriced = list(dict.fromkeys(step.model for step in steps if step.cost_usd is None))
        dag = schedule_seconds(
            plan,
            {task_id: estimate.seconds for task_id, estimate in tasks.items()},
            concurrency=self.concurrency,
            worker_limits=self.registry.concurrency_limits(),
        )
        return PlanEstimate(
            tasks=ordered,
            planning=planning,
            synthesis=synthesis,
            cost_usd=None if unpriced else sum(step.cost_usd or 0.0 for step in steps),
            seconds=planning.seconds + dag + (synthesis.seconds if synthesis else 0.0),
            unpriced=unpriced,
        )

    def _task(self, task: Task, deps: Mapping[str, int]) -> tuple[TaskEstimate, int]:
        """A task's calls on its worker's model, and its reviews when a validator is set,
        given its dependencies' output tokens; and the output tokens of its own answer."""
        worker = self.registry.get(task.worker)
        model = self.model_of(worker.model)
        stats = self.history.stats(CallPurpose.task, worker.name, model)
        if stats is not None:
            own = _from_history(model, stats)
        else:
            sent = worker.system_prompt + worker_input(
                task.instructions, dict.fromkeys(deps, ""), task.args
            )
            inputs = _tokens(sent) + sum(deps.values())
            own = _typical(model, inputs, round(worker.max_tokens * TYPICAL_OUTPUT_SHARE))
        parts = [own]
        validator = self.registry.get(task.judge) if task.judge else self.validator
        if validator is not None and (task.judge or validator.name != worker.name):
            parts.append(self._review(task, validator, own.usage.output_tokens))
        estimate = TaskEstimate(task_id=task.id, worker=worker.name, **_combine(parts))
        return estimate, own.usage.output_tokens

    def _review(self, task: Task, validator: Worker, output_tokens: int) -> _Part:
        model = self.model_of(validator.model)
        stats = self.history.stats(CallPurpose.review, validator.name, model)
        if stats is not None:
            part = _from_history(model, stats)
        else:
            sent = validator.system_prompt + REVIEW_SUFFIX + task.instructions + "{}"
            tokens = min(validator.max_tokens, TYPICAL_REVIEW_TOKENS)
            part = _typical(model, _tokens(sent) + output_tokens, tokens)
        part.basis = f"review {part.basis}"
        return part

    def _planning(self, plan: Plan, request: str) -> StepEstimate:
        """Planning on the planner model; typically the plan's own JSON as its output."""
        model = self.planner_model
        stats = self.history.stats(CallPurpose.plan, None, model)
        if stats is not None:
            return StepEstimate(**_combine([_from_history(model, stats)]))
        sent = planner_system_prompt(self.registry, self.max_tasks, request) + request
        written = plan.model_dump_json(exclude_none=True)
        return StepEstimate(**_combine([_typical(model, _tokens(sent), _tokens(written))]))

    def _synthesis(self, plan: Plan, request: str, answers: int) -> StepEstimate | None:
        """Synthesis of ``answers`` tokens of task outputs on the default model; None when
        the answer needs no model call (one task, or the plan names its answer task)."""
        if not self.synthesis or len(plan.tasks) < 2 or plan.answer_task is not None:
            return None
        model = self.default_model
        stats = self.history.stats(CallPurpose.synthesis, None, model)
        if stats is not None:
            return StepEstimate(**_combine([_from_history(model, stats)]))
        sent = SYNTHESIS_SYSTEM + request + "".join(task.instructions for task in plan.tasks)
        inputs = _tokens(sent) + answers
        output = round(SYNTHESISER.max_tokens * TYPICAL_OUTPUT_SHARE)
        return StepEstimate(**_combine([_typical(model, inputs, output)]))

    def worker_costs(self) -> dict[str, float | None]:
        """Each worker's dollars for a typical task of its own (reviews included), for the
        planner's prompt: history's median, or typical values for a short instruction."""
        costs = {}
        for worker in self.registry:
            example = Task(id="t1", worker=worker.name, instructions="x" * 200)
            costs[worker.name] = self._task(example, {})[0].cost_usd
        return costs

    def unpriced_steps(self) -> list[str]:
        """Models of the calls every plan makes (planning, synthesis) with no known price."""
        models = [self.planner_model] + ([self.default_model] if self.synthesis else [])
        return [model for model in dict.fromkeys(models) if not priced(model)]


def schedule_seconds(
    plan: Plan,
    seconds: Mapping[str, float],
    *,
    concurrency: int | None = None,
    worker_limits: Mapping[str, int] | None = None,
) -> float:
    """When the last task of ``plan`` ends if each takes ``seconds[id]`` and the engine
    schedules them: a task starts once its dependencies are done and a slot (global and its
    worker's) is free, first ready first served. Without limits: the critical path."""
    limits = dict(worker_limits or {})
    children = plan.dependants()
    waiting = {task.id: len(task.depends_on) for task in plan.tasks}
    worker_of = {task.id: task.worker for task in plan.tasks}
    order = {task.id: index for index, task in enumerate(plan.tasks)}
    ready = [task.id for task in plan.tasks if not task.depends_on]
    running: list[tuple[float, int, str]] = []
    busy: Counter[str] = Counter()
    now = 0.0
    while ready or running:
        blocked = []
        for task_id in ready:
            worker = worker_of[task_id]
            full = concurrency is not None and len(running) >= concurrency
            if full or busy[worker] >= limits.get(worker, len(plan.tasks)):
                blocked.append(task_id)
                continue
            busy[worker] += 1
            heapq.heappush(running, (now + seconds[task_id], order[task_id], task_id))
        ready = blocked
        now, _, done = heapq.heappop(running)
        busy[worker_of[done]] -= 1
        for child in children[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return now


def _from_history(model: str, stats: HistoryStats) -> _Part:
    seconds = stats.latency * stats.per_parent
    return _Part(model, stats.usage, stats.per_parent, seconds, stats.basis)


def _typical(model: str, input_tokens: int, output_tokens: int) -> _Part:
    local = model == "local" or model.startswith("local:")
    rate = LOCAL_TOKENS_PER_SECOND if local else TYPICAL_TOKENS_PER_SECOND
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return _Part(model, usage, 1.0, TYPICAL_CALL_SECONDS + output_tokens / rate, TYPICAL)


def _combine(parts: list[_Part]) -> dict:
    """A step's fields from its parts (a task's own calls, then its reviews)."""
    prices = [part.cost_usd for part in parts]
    return {
        "model": parts[0].model,
        "calls": sum(part.calls for part in parts),
        "input_tokens": round(sum(part.usage.input_tokens * part.calls for part in parts)),
        "output_tokens": round(sum(part.usage.output_tokens * part.calls for part in parts)),
        "cost_usd": None if None in prices else sum(prices),  # type: ignore[arg-type]
        "seconds": sum(part.seconds for part in parts),
        "basis": "; ".join(part.basis for part in parts),
    }


def _times(usage: Usage, calls: float) -> Usage:
    return Usage(
        input_tokens=round(usage.input_tokens * calls),
        output_tokens=round(usage.output_tokens * calls),
        cache_read_tokens=round(usage.cache_read_tokens * calls),
        cache_write_tokens=round(usage.cache_write_tokens * calls),
    )


def _tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)
