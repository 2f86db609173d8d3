"""Generator-evaluator: a worker's output checked by a judge and revised until accepted.

The quality gate, generalised: instead of one validator for every task of a run, the task
names its own ``judge`` and ``max_rounds`` (``Task.judge``). The engine's gate then loops:
the judge answers a verdict (approved, reasons); a rejection sends the generator its
previous output and the judge's reasons, and the next output is judged again, until the
judge approves or ``max_rounds`` outputs were made. Each judgement is a ``review`` call in
the ledger and a ``task_validated`` event; a last output still rejected is kept, marked
``approved=False`` (its confidence drops), never passed off as accepted.
"""

from __future__ import annotations

from foreman.errors import ConfigError
from foreman.patterns.base import Pattern, check_name
from foreman.plan.schema import Plan, Task
from foreman.results import RunResult
from foreman.workers.spec import Worker

#: The task id of the generator's work in the plan.
TASK_ID = "generate"


class GeneratorEvaluator(Pattern):
    """``GeneratorEvaluator(generator=writer, judge=critic, max_rounds=3)``.

    The request is what to produce (``instructions``, when given, come before it); the
    judge's own system prompt holds its criteria.
    """

    def __init__(
        self,
        generator: Worker,
        judge: Worker,
        *,
        max_rounds: int = 3,
        instructions: str | None = None,
        name: str = "generator_evaluator",
    ) -> None:
        if generator.name == judge.name:
            raise ConfigError(f"The judge must be another worker than {generator.name!r}.")
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be at least 1, not {max_rounds}.")
        self.generator = generator
        self.judge = judge
        self.max_rounds = max_rounds
        self.instructions = instructions
        self.name = check_name(name, "Pattern name")

    def workers(self) -> list[Worker]:
        return [self.generator, self.judge]

    def plan_for(self, request: str) -> Plan:
        text = f"{self.instructions}\n\n{request}" if self.instructions else request
        task = Task(
            id=TASK_ID,
            worker=self.generator.name,
            instructions=text,
            judge=self.judge.name,
            max_rounds=self.max_rounds,
        )
        return Plan(tasks=[task], answer_task=TASK_ID)

    @staticmethod
    def accepted(result: RunResult) -> bool | None:
        """The judge's last verdict: True, False (rounds ran out), None (no verdict)."""
        task = result.tasks.get(TASK_ID)
        return task.approved if task is not None else None
