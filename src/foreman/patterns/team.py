"""Patterns declared in a team file, built into runnable patterns on the team's workers."""

from __future__ import annotations

from foreman.errors import ConfigError
from foreman.patterns.base import Pattern
from foreman.patterns.fanout import AGGREGATE_INSTRUCTIONS, CHUNK_INSTRUCTIONS, FanOut
from foreman.patterns.judged import GeneratorEvaluator
from foreman.patterns.pipeline import Pipeline, Stage
from foreman.workers.patterns import FanOutSpec, PatternSpec, PipelineSpec
from foreman.workers.registry import Registry


def from_spec(spec: PatternSpec, registry: Registry) -> Pattern:
    """The pattern ``spec`` describes, its worker names resolved in ``registry``."""
    if isinstance(spec, PipelineSpec):
        stages = [
            Stage(
                name=stage.name,
                worker=registry.get(stage.worker),
                instructions=stage.instructions,
                judge=registry.get(stage.judge) if stage.judge else None,
                max_rounds=stage.max_rounds,
            )
            for stage in spec.stages
        ]
        return Pipeline(stages, name=spec.name)
    if isinstance(spec, FanOutSpec):
        return FanOut(
            registry.get(spec.worker),
            registry.get(spec.aggregate),
            instructions=spec.instructions or CHUNK_INSTRUCTIONS,
            aggregate_instructions=spec.aggregate_instructions or AGGREGATE_INSTRUCTIONS,
            chunk_chars=spec.chunk_chars,
            max_group=spec.max_group,
            max_input_tokens=spec.max_input_tokens,
            name=spec.name,
        )
    return GeneratorEvaluator(
        registry.get(spec.generator),
        registry.get(spec.judge),
        max_rounds=spec.max_rounds,
        instructions=spec.instructions,
        name=spec.name,
    )


def team_pattern(registry: Registry, name: str) -> Pattern:
    """The team's pattern called ``name``; ``ConfigError`` naming the known ones if none."""
    spec = registry.patterns.get(name)
    if spec is None:
        known = ", ".join(registry.patterns) or "none (a team file's patterns: section)"
        raise ConfigError(f"No pattern named {name!r}. Known patterns: {known}.")
    return from_spec(spec, registry)
