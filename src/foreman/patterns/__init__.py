"""Patterns that compose: pipeline, fan-out, generator-evaluator.

Each compiles a request to a ``Plan`` and runs it through the engine, so its runs are
durable, costed, approved and streamed like any other (``foreman.patterns.base``).
"""

from foreman.patterns.base import Pattern
from foreman.patterns.fanout import FanOut, split_text
from foreman.patterns.judged import GeneratorEvaluator
from foreman.patterns.pipeline import Pipeline, Stage
from foreman.patterns.team import from_spec, team_pattern

__all__ = [
    "FanOut",
    "GeneratorEvaluator",
    "Pattern",
    "Pipeline",
    "Stage",
    "from_spec",
    "split_text",
    "team_pattern",
]
