"""Pipeline: named stages, each transforming the previous stage's output.

Every stage also gets the original input (``args.input``), so a stage adds to what came
before rather than working from a lossy retelling of it: the editor sees the draft *and*
the brief. Stage k is a task that depends on stage k-1; the last stage's output is the
answer (no synthesis call). A stage may have a ``judge`` (generator-evaluator inside a
pipeline): its output is revised with the judge's feedback before the next stage starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from foreman.errors import ConfigError
from foreman.patterns.base import Pattern, check_name
from foreman.plan.schema import Plan, Task
from foreman.workers.spec import Worker

#: Said to every stage, after its own instructions: where its two inputs are.
STAGE_NOTE = (
    " (The original input is `args.input`; the previous stage's output, if any, is in "
    "`inputs`. Keep what earlier stages established unless your instructions say otherwise.)"
)


class Stage(BaseModel):
    """One step of a pipeline: its name (the task id), worker and instructions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    worker: Worker
    instructions: str = Field(min_length=1)
    judge: Worker | None = Field(None, description="Reviews the stage's output (revisions).")
    max_rounds: int | None = Field(None, ge=1, description="Outputs under the judge, at most.")


class Pipeline(Pattern):
    """``Pipeline([Stage("draft", writer, "..."), Stage("edit", editor, "...")])``."""

    def __init__(self, stages: Sequence[Stage], *, name: str = "pipeline") -> None:
        if not stages:
            raise ConfigError("A pipeline needs at least one stage.")
        names = [check_name(stage.name, "Stage name") for stage in stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"Pipeline stage names must differ: {', '.join(names)}.")
        self.stages = list(stages)
        self.name = check_name(name, "Pattern name")

    def workers(self) -> list[Worker]:
        found: dict[str, Worker] = {}
        for stage in self.stages:
            for worker in (stage.worker, stage.judge):
                if worker is not None:
                    found.setdefault(worker.name, worker)
        return list(found.values())

    def plan_for(self, request: str) -> Plan:
        tasks = []
        for previous, stage in zip([None, *self.stages], self.stages, strict=False):
            tasks.append(
                Task(
                    id=stage.name,
                    worker=stage.worker.name,
                    instructions=stage.instructions + STAGE_NOTE,
                    depends_on=[previous.name] if previous is not None else [],
                    args={"input": request},
                    judge=stage.judge.name if stage.judge is not None else None,
                    max_rounds=stage.max_rounds,
                )
            )
        return Plan(tasks=tasks, answer_task=self.stages[-1].name)
