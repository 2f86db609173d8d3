"""The engine: DAG scheduling, failure policies, quality gate, assembly, orchestration."""

from foreman.engine.orchestrator import Orchestrator
from foreman.results import RunResult, RunStatus, TaskResult, TaskStatus

__all__ = ["Orchestrator", "RunResult", "RunStatus", "TaskResult", "TaskStatus"]
