"""The typed event stream: everything a run does, as it happens.

Every event carries the run id and a wall-clock timestamp, and a ``type`` tag so a JSON line
can be parsed back with ``EVENT_ADAPTER.validate_json(line)``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from foreman.models.base import Usage
from foreman.plan.schema import Plan, Task
from foreman.results import RunResult, TaskResult
from foreman.tools.records import ToolOutcome


class _Event(BaseModel):
    run_id: str
    at: float = Field(default_factory=time.time)


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    request: str
    resumed: bool = Field(False, description="True when an interrupted run is continued.")


class PlanRejected(_Event):
    """The planner's answer could not run; it is being asked again with these errors."""

    type: Literal["plan_rejected"] = "plan_rejected"
    attempt: int
    errors: list[str]


class PlanReady(_Event):
    type: Literal["plan_ready"] = "plan_ready"
    plan: Plan
    usage: Usage


class TaskStarted(_Event):
    type: Literal["task_started"] = "task_started"
    task_id: str
    worker: str


class TaskRouted(_Event):
    """A router (``--router llm|embedding``) chose the task's worker, before it runs."""

    type: Literal["task_routed"] = "task_routed"
    task_id: str
    worker: str
    router: str
    score: float | None = Field(None, description="The embedding router's similarity.")
    fallback: bool = Field(False, description="No worker was a confident match.")
    planned_worker: str | None = Field(
        None, description="The planner's choice it replaces (planned mode)."
    )


class TaskRetried(_Event):
    """An attempt failed transiently; the next one starts after ``delay`` seconds."""

    type: Literal["task_retried"] = "task_retried"
    task_id: str
    attempt: int
    error: str
    delay: float


CallPurpose = Literal["plan", "review", "synthesis", "compaction", "replan", "delegate", "route"]


class CallRetried(_Event):
    """A model call of the engine's own failed transiently and is tried again after ``delay``
    seconds: planning, a quality review (``task_id`` is the reviewed task), synthesis, a
    revision of the plan (``replan``) or a turn of the delegating orchestrator.
    A task's own worker calls report their retries as ``task_retried``."""

    type: Literal["call_retried"] = "call_retried"
    purpose: CallPurpose
    task_id: str | None = None
    attempt: int
    error: str
    delay: float


class TaskFallback(_Event):
    """The task's model or worker gave up; ``to`` (a model or worker name) takes over."""

    type: Literal["task_fallback"] = "task_fallback"
    task_id: str
    kind: Literal["model", "worker"]
    to: str
    error: str


class TaskValidated(_Event):
    """The quality gate's verdict on one version of a task's output (None: not reviewed)."""

    type: Literal["task_validated"] = "task_validated"
    task_id: str
    approved: bool | None
    reasons: list[str]
    revision: int


class ApprovalRequested(_Event):
    """A risky task waits for a person; ``inputs`` is exactly what the worker would see.

    ``may_have_run``: an approved execution of this task already started (it failed, or the
    process died during it), so its side effects may already have happened.
    """

    type: Literal["approval_requested"] = "approval_requested"
    task_id: str = Field(
        description="The task, or for a tool call its key ``<task>#<n>``: what to approve."
    )
    worker: str
    risk: str
    inputs: str
    may_have_run: bool = False
    tool: str | None = Field(None, description="Set for a tool call: the tool's exact name.")
    arguments: dict[str, Any] | None = Field(
        None, description="For a tool call: the exact arguments the approval covers."
    )


class ApprovalDecided(_Event):
    type: Literal["approval_decided"] = "approval_decided"
    task_id: str
    approved: bool
    note: str | None = None


class ToolCalled(_Event):
    """A worker's tool call is about to run, or to be refused: the exact tool and
    arguments the model asked for. A risky call's ``approval_requested`` (and decision)
    comes first; a call waiting for a person has none yet. ``key`` (``<task>#<n>``)
    names the call in approvals."""

    type: Literal["tool_called"] = "tool_called"
    task_id: str
    worker: str
    tool: str
    arguments: dict[str, Any]
    call_id: str
    key: str


class ToolFinished(_Event):
    """A tool call ended: ``ok``, ``error`` (the model was told why), ``refused`` (not
    in the worker's allow-list: never run) or ``rejected`` (by the approver: never run).
    ``result`` is a bounded excerpt of what the model was given back."""

    type: Literal["tool_finished"] = "tool_finished"
    task_id: str
    tool: str
    call_id: str
    key: str
    outcome: ToolOutcome
    latency: float = Field(0.0, description="Seconds the tool ran (0 when it never ran).")
    result: str = ""


class TaskFinished(_Event):
    type: Literal["task_finished"] = "task_finished"
    task_id: str
    worker: str
    output: Any
    usage: Usage
    latency: float
    attempts: int

    @classmethod
    def of(cls, run_id: str, result: TaskResult) -> TaskFinished:
        """The event of a task that settled with ``result``."""
        return cls(
            run_id=run_id,
            task_id=result.task_id,
            worker=result.worker,
            output=result.output,
            usage=result.usage,
            latency=result.latency,
            attempts=result.attempts,
        )


class TaskFailed(_Event):
    """Every attempt and fallback failed; ``policy`` says what the run does about it."""

    type: Literal["task_failed"] = "task_failed"
    task_id: str
    worker: str
    error: str
    policy: Literal["skip", "abort"]


class TaskSkipped(_Event):
    type: Literal["task_skipped"] = "task_skipped"
    task_id: str
    reason: str


class BudgetExceeded(_Event):
    """A limit of the run's budget is reached: no new model call starts; the calls in
    flight finish or are cancelled (``on_limit``), and the run ends ``over_budget``."""

    type: Literal["budget_exceeded"] = "budget_exceeded"
    limit: str = Field(description="max_tokens, max_cost_usd, max_seconds or max_calls.")
    used: float
    allowed: float
    on_limit: Literal["finish", "cancel"]


class Assembled(_Event):
    type: Literal["assembled"] = "assembled"
    method: Literal["synthesis", "concat", "single"]
    answer: str


class ContextCompacted(_Event):
    """Results the orchestrator reads for ``purpose`` passed its context budget: the
    ``compacted`` ones (ids, oldest first) reach it as summaries. Their full outputs are
    unchanged in the store and for the workers that depend on them. ``failed`` summary
    calls were replaced by a cut of the text."""

    type: Literal["context_compacted"] = "context_compacted"
    purpose: str
    compacted: list[str]
    tokens_before: int
    tokens_after: int
    failed: int = 0


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    result: RunResult


class TaskExpanded(_Event):
    """A for-each task's dependency settled: it runs as one item task per element of the
    list it names (``item_ids``, in item order, none for an empty list); the task itself
    settles once they all have, as the list of their outputs."""

    type: Literal["task_expanded"] = "task_expanded"
    task_id: str
    count: int
    item_ids: list[str]


class PlanRevised(_Event):
    """The orchestrator revised the plan after tasks settled: ``plan`` is version
    ``version`` (the first plan is 1); settled and running tasks are never touched."""

    type: Literal["plan_revised"] = "plan_revised"
    version: int
    reason: str
    added: list[str]
    changed: list[str]
    dropped: list[str]
    plan: Plan
    usage: Usage = Field(default_factory=Usage, description="What the revision's calls cost.")


class ReplanStalled(_Event):
    """Replanning made no progress (``reason`` says how): no revision and no new task
    starts; the tasks running finish, and the run ends ``stalled`` with what finished."""

    type: Literal["replan_stalled"] = "replan_stalled"
    reason: str


class OrchestratorTurn(_Event):
    """One turn of the delegating orchestrator (``mode="delegate"``): the delegations it
    made (tasks, which now start, in parallel), the calls it made that were refused and
    why, or, when ``final``, its answer in ``text``."""

    type: Literal["orchestrator_turn"] = "orchestrator_turn"
    turn: int
    text: str = ""
    delegations: list[Task] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)
    final: bool = False
    usage: Usage


class NestedEvent(_Event):
    """An event of a nested run, carried up to its parent's stream: ``run_id`` and
    ``task_id`` are the parent run and the task the nested run carries out, ``event`` is
    the nested run's own event (itself a ``nested`` one for a run nested deeper)."""

    type: Literal["nested"] = "nested"
    task_id: str
    child_run_id: str
    depth: int = Field(description="1 for a run nested in a top-level run, 2 below that...")
    event: Event


Event = Annotated[
    RunStarted
    | PlanRejected
    | PlanReady
    | TaskStarted
    | TaskRouted
    | TaskRetried
    | CallRetried
    | TaskFallback
    | TaskValidated
    | ApprovalRequested
    | ApprovalDecided
    | ToolCalled
    | ToolFinished
    | TaskFinished
    | TaskFailed
    | TaskSkipped
    | BudgetExceeded
    | Assembled
    | RunFinished
    | TaskExpanded
    | ContextCompacted
    | PlanRevised
    | ReplanStalled
    | OrchestratorTurn
    | NestedEvent,
    Field(discriminator="type"),
]
NestedEvent.model_rebuild()

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
