"""Records for conformance tests in one line each, with readable defaults.

Public so that a store's own extra tests can build the same records the suite does.
"""

from __future__ import annotations

import json
from typing import Any

from foreman.ledger.records import CallPurpose, CallRecord, CallStatus, provider_of
from foreman.models.base import Usage
from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus
from foreman.store.base import Approval, RunRecord
from foreman.workers.spec import RiskLevel


def run_record(run_id: str = "run-1", **fields: Any) -> RunRecord:
    fields.setdefault("request", f"request of {run_id}")
    return RunRecord(run_id=run_id, **fields)


def plan(*task_ids: str) -> Plan:
    return Plan(
        tasks=[
            Task(id=task_id, worker="researcher", instructions=f"do {task_id}")
            for task_id in task_ids
        ]
    )


def result(task_id: str, status: TaskStatus = TaskStatus.succeeded, **fields: Any) -> TaskResult:
    fields.setdefault("output", f"output of {task_id}")
    return TaskResult(task_id=task_id, worker="researcher", status=status, **fields)


def approval(task_id: str, run_id: str = "run-1", **fields: Any) -> Approval:
    fields.setdefault("worker", "mailer")
    fields.setdefault("risk", RiskLevel.high)
    fields.setdefault("instructions", f"do {task_id}")
    fields.setdefault("inputs", f"the message for {task_id}")
    return Approval(run_id=run_id, task_id=task_id, **fields)


def call(
    call_id: str,
    run_id: str = "run-1",
    *,
    task_id: str | None = "t1",
    status: CallStatus = CallStatus.ok,
    started_at: float = 100.0,
    **fields: Any,
) -> CallRecord:
    """A ledger record: by default an answered call of task ``t1`` on a priced model."""
    purpose = fields.pop("purpose", CallPurpose.task if task_id else CallPurpose.plan)
    fields.setdefault("parent", f"task:{task_id}" if task_id else purpose.value)
    fields.setdefault("model", "openai:gpt-4o-mini")
    fields.setdefault("provider", provider_of(fields["model"]))
    fields.setdefault("worker", "researcher" if task_id else None)
    fields.setdefault("usage", Usage(input_tokens=100, output_tokens=20))
    return CallRecord(
        run_id=run_id,
        call_id=call_id,
        purpose=purpose,
        task_id=task_id,
        status=status,
        started_at=started_at,
        **fields,
    )


def as_stored(events: list[Any]) -> list[dict[str, Any]]:
    """Events as ``load_events`` returns them: their JSON objects."""
    return [json.loads(event.model_dump_json()) for event in events]
