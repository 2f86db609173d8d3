"""What a worker is: a stateless specialist described entirely by data.

A worker holds no state between tasks; everything it knows arrives in its input (its task's
instructions and its dependencies' outputs). That is what lets the engine retry, resume or
replay any task in isolation.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foreman.models.retry import RetryPolicy
from foreman.tools.base import RiskLevel

__all__ = ["RiskLevel", "Worker", "unknown_keys"]


class Worker(BaseModel):
    """A specialised, stateless agent the orchestrator can route tasks to.

    ``model`` is a model name (``"openai:gpt-5.4-mini"``, ``"local"``...); ``None`` uses the
    orchestrator's default, so cheap workers and a strong planner can be mixed freely.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")
    description: str
    system_prompt: str
    model: str | None = None
    input_schema: type[BaseModel] | None = Field(
        None, description="Arguments the planner must give this worker's tasks (task.args)."
    )
    output_schema: type[BaseModel] | None = Field(
        None, description="Structure the worker's answer must have; enforced and validated."
    )
    timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds per model call; None: the model's default (120 s for a provider, "
        "600 s for a local model, whose queue time does not count).",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    fallback_model: str | None = Field(
        None, description="Model to try once the worker's own model has exhausted its retries."
    )
    fallback: str | None = Field(
        None, description="Worker to hand the task to when this one fails for good."
    )
    on_failure: Literal["skip", "abort"] = Field(
        "skip", description="After every fallback failed: skip the task, or abort the run."
    )
    missing_inputs: Literal["mark", "skip"] = Field(
        "mark",
        description="When a dependency was skipped: run with an explicit missing-input "
        "marker, or skip this task too.",
    )
    risk: RiskLevel = RiskLevel.low
    idempotent: bool = Field(
        False,
        description="Running it twice does no harm: an approved task cut short by a crash "
        "runs again on resume without asking again.",
    )
    max_concurrency: int | None = Field(None, ge=1, description="Tasks of this worker at once.")
    max_tokens: int = Field(1024, ge=1)
    tools: tuple[str, ...] = Field(
        (),
        description="The tools this worker may call (names or shell-style patterns from "
        "the registry's toolbox). Empty: one model call, no tools. A tool outside this "
        "list is never offered to the model nor run, whatever the model asks.",
    )
    max_tool_turns: int = Field(
        8, ge=1, description="Model turns in the worker's tool loop before it must answer."
    )
    temperature: float | None = None
    examples: tuple[str, ...] = Field(
        (),
        description="Typical tasks of this worker, one line each: what the embedding router "
        "compares a task with beside the description (docs/routing.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        """A misspelt key must not be dropped silently: ``rsik: high`` would otherwise load
        a high-risk worker as low risk, without its approval gate."""
        if isinstance(data, dict):
            problems = unknown_keys(data, cls.model_fields)
            retry = data.get("retry")
            if isinstance(retry, dict):
                problems += unknown_keys(retry, RetryPolicy.model_fields, within="retry")
            if problems:
                raise ValueError("; ".join(problems))
        return data

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _must_be_pydantic(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("must be a pydantic BaseModel subclass")
        return value


def unknown_keys(data: dict[str, Any], valid: Iterable[str], *, within: str = "") -> list[str]:
    """One message per key of ``data`` not in ``valid``, with the nearest valid key if any."""
    valid = list(valid)
    prefix = f"{within}." if within else ""
    problems = []
    for key in data:
        if key in valid:
            continue
        message = f"unknown key {prefix + str(key)!r}"
        close = difflib.get_close_matches(str(key), valid, n=1)
        if close:
            message += f" (did you mean {prefix + close[0]!r}?)"
        problems.append(message)
    return problems
