"""Plans: the schema, validation, and the planner that writes them."""

from foreman.plan.planner import Planner, PlanOutcome
from foreman.plan.schema import Plan, Task, constrained_plan_schema
from foreman.plan.validate import find_cycle, parse_plan, validate_plan

__all__ = [
    "Plan",
    "PlanOutcome",
    "Planner",
    "Task",
    "constrained_plan_schema",
    "find_cycle",
    "parse_plan",
    "validate_plan",
]
