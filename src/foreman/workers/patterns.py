"""Patterns in a team file: their shapes as data, naming the file's workers.

    patterns:
      - name: postmortem
        kind: pipeline
        stages:
          - {name: facts, worker: extractor, instructions: List the facts.}
          - {name: draft, worker: writer, instructions: Write it up., judge: critic}
      - name: audit
        kind: fanout
        worker: auditor
        aggregate: risk_analyst
        max_group: 5
      - name: haiku
        kind: generator_evaluator
        generator: poet
        judge: critic
        max_rounds: 3

Data only (no engine import), so the registry can hold them; ``foreman.patterns.from_spec``
builds the runnable pattern. Strict like workers: an unknown key is an error.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_NAME = r"^[A-Za-z][A-Za-z0-9_\-]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StageSpec(_Spec):
    name: str = Field(pattern=_NAME)
    worker: str
    instructions: str = Field(min_length=1)
    judge: str | None = None
    max_rounds: int | None = Field(None, ge=1)


class PipelineSpec(_Spec):
    kind: Literal["pipeline"]
    name: str = Field(pattern=_NAME)
    stages: list[StageSpec] = Field(min_length=1)

    def worker_names(self) -> list[str]:
        return [n for s in self.stages for n in (s.worker, s.judge) if n is not None]


class FanOutSpec(_Spec):
    kind: Literal["fanout"]
    name: str = Field(pattern=_NAME)
    worker: str
    aggregate: str
    instructions: str | None = None
    aggregate_instructions: str | None = None
    chunk_chars: int = Field(8000, ge=1)
    max_group: int = Field(8, ge=2)
    max_input_tokens: int | None = Field(None, ge=1)

    def worker_names(self) -> list[str]:
        return [self.worker, self.aggregate]


class GeneratorEvaluatorSpec(_Spec):
    kind: Literal["generator_evaluator"]
    name: str = Field(pattern=_NAME)
    generator: str
    judge: str
    max_rounds: int = Field(3, ge=1)
    instructions: str | None = None

    def worker_names(self) -> list[str]:
        return [self.generator, self.judge]


PatternSpec = Annotated[
    PipelineSpec | FanOutSpec | GeneratorEvaluatorSpec, Field(discriminator="kind")
]
