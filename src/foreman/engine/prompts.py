"""Prompts the engine sends on its own behalf: worker input, quality review, synthesis."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


class Verdict(BaseModel):
    """The quality gate's structured answer."""

    approved: bool
    reasons: list[str] = Field(default_factory=list)


REVIEW_SUFFIX = """

You are now acting as a quality reviewer. You receive a JSON object with a task's \
`instructions` and the `output` a colleague produced. Approve the output if it does what the \
instructions ask and contains no clear errors. Otherwise reject it and give short, specific \
reasons the colleague can act on. Answer with JSON only: \
{"approved": true|false, "reasons": ["..."]}"""

SYNTHESIS_SYSTEM = """\
You assemble the final answer to a user's request from the results of several specialist \
workers. You receive a JSON object with the `request` and the `results`, each with its \
status and a confidence between 0 and 1. Write one coherent answer to the request, using \
the results and keeping their important details. If a result is missing or has low \
confidence, say plainly which part of the answer is incomplete or uncertain. Do not \
mention workers or task ids."""

# Built once: ``json.dumps`` with options builds a new encoder on every call, which is a
# measurable part of each task's start.
_WORKER_INPUT_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
#: A string as that encoder writes it.
_quoted = json.encoder.encode_basestring


def worker_input(
    instructions: str,
    inputs: dict[str, Any],
    args: dict[str, Any] | None = None,
    feedback: tuple[Any, list[str]] | None = None,
    memories: dict[str, Any] | None = None,
) -> str:
    """The one message a worker sees: its instructions and its dependencies' outputs
    (and, with memory on, relevant earlier outputs: ``engine.memory``)."""
    if not inputs and args is None and memories is None and feedback is None:
        # A task without inputs (every task of a fan-out): the same text, without the
        # encoder's walk over a dict (half a task's cost of getting its input).
        return f'{{"instructions": {_quoted(instructions)}, "inputs": {{}}}}'
    payload: dict[str, Any] = {"instructions": instructions, "inputs": inputs}
    if args is not None:
        payload["args"] = args
    if memories is not None:
        payload["memories"] = memories
    if feedback is not None:
        previous, reasons = feedback
        payload["previous_output"] = previous
        payload["reviewer_feedback"] = reasons
        payload["instructions"] += (
            " A reviewer rejected your previous output for the reasons in "
            "`reviewer_feedback`; produce a corrected version."
        )
    return _WORKER_INPUT_ENCODER.encode(payload)


def review_input(instructions: str, output: Any) -> str:
    return json.dumps({"instructions": instructions, "output": output}, ensure_ascii=False)


def synthesis_input(request: str, results: list[dict[str, Any]]) -> str:
    return json.dumps({"request": request, "results": results}, ensure_ascii=False, default=str)
