"""foreman: the orchestrator-workers pattern for LLM agents.

The public API is what this module exports; everything else is internal.
"""

from foreman.engine import Orchestrator, RunResult, RunStatus, TaskResult, TaskStatus
from foreman.errors import BudgetExceededError, ForemanError
from foreman.ledger.budget import Budget
from foreman.models import Model, ModelRequest, ModelResponse, load_model
from foreman.plan import Plan, Task
from foreman.tools import Tool, Toolbox, ToolContext, ToolError, tool
from foreman.workers import Registry, RetryPolicy, RiskLevel, Worker, load_team

__all__ = [
    "Budget",
    "BudgetExceededError",
    "ForemanError",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "Orchestrator",
    "Plan",
    "Registry",
    "RetryPolicy",
    "RiskLevel",
    "RunResult",
    "RunStatus",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Tool",
    "ToolContext",
    "ToolError",
    "Toolbox",
    "Worker",
    "load_model",
    "load_team",
    "tool",
]

__version__ = "0.1.0"
