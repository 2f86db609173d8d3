"""Pipeline: incident notes -> facts -> a reviewed postmortem draft -> a final edit.

    python examples/pipeline.py --scripted           # deterministic, no provider
    python examples/pipeline.py --model anthropic:claude-sonnet-4-5
    python examples/pipeline.py --scripted --json    # events as JSON lines

Three named stages, each transforming the previous one's output, every one of them also
given the original notes (``args.input``), so a later stage can add what an earlier one
left out. The ``draft`` stage is a generator-evaluator inside the pipeline: a ``critic``
judges it and it is revised with the critic's feedback (at most twice) before the
``edit`` stage starts. The last stage's output is the answer: no synthesis call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from foreman import ForemanError, Worker
from foreman.engine.prompts import REVIEW_SUFFIX
from foreman.events import Event
from foreman.models.base import ModelRequest
from foreman.patterns import Pipeline, Stage
from foreman.testing import ScriptedModel

NOTES = """\
Incident notes, checkout service, 2026-03-14 (all times UTC)
14:02 Deploy 4812 of checkout-api starts (new payment retry logic)
14:09 Error rate on POST /orders rises from 0.2% to 31%
14:11 Pager fires; Dana (on call) starts investigating
14:18 Retry storm against the payment provider identified
14:21 Deploy 4812 rolled back
14:26 Error rate back to 0.3%
Impact: about 2,300 customers could not complete an order for 17 minutes.
"""

EXTRACTOR = Worker(
    name="extractor",
    description="Turns raw incident notes into a clean, timestamped list of facts.",
    system_prompt="You turn raw incident notes into a timestamped list of facts, one per "
    "line, in order. No interpretation.",
)
WRITER = Worker(
    name="writer",
    description="Writes a blameless postmortem from facts.",
    system_prompt="You write a short blameless postmortem: summary, timeline, root cause, "
    "and action items with owners.",
)
CRITIC = Worker(
    name="critic",
    description="Judges postmortems.",
    system_prompt="You review postmortems. Reject one without a root cause or without "
    "action items that each name an owner.",
)
EDITOR = Worker(
    name="editor",
    description="Edits a postmortem for publication.",
    system_prompt="You edit a postmortem for publication: keep every fact, make sure the "
    "customer impact stated in the original notes is in it, tighten the wording.",
)

PIPELINE = Pipeline(
    [
        Stage(name="facts", worker=EXTRACTOR, instructions="List the facts in the notes."),
        Stage(
            name="draft",
            worker=WRITER,
            instructions="Write the postmortem from the facts.",
            judge=CRITIC,
            max_rounds=2,
        ),
        Stage(name="edit", worker=EDITOR, instructions="Edit the postmortem for publication."),
    ],
    name="postmortem",
)


def scripted_model() -> ScriptedModel:
    """A deterministic stand-in for a provider that does what each stage's prompt asks,
    so what each stage sees and passes on is real."""

    def answer(request: ModelRequest) -> str:
        sent = json.loads(request.messages[0].content)
        system = request.system or ""
        if system.endswith(REVIEW_SUFFIX):  # the critic judging a draft
            if "Action items" in sent["output"]:
                return '{"approved": true, "reasons": []}'
            return json.dumps(
                {"approved": False, "reasons": ["No action items with owners: add them."]}
            )
        notes = sent["args"]["input"]
        if system == EXTRACTOR.system_prompt:
            lines = [line for line in notes.splitlines() if line[:2].isdigit()]
            return "\n".join(f"- {line}" for line in lines)
        if system == WRITER.system_prompt:
            facts = sent["inputs"]["facts"]
            draft = (
                "Summary: a deploy of checkout-api caused a retry storm against the payment "
                f"provider; it was rolled back.\nTimeline:\n{facts}\n"
                "Root cause: unbounded payment retries in deploy 4812."
            )
            if "reviewer_feedback" in sent:  # the critic's reasons reached this round
                draft += (
                    "\nAction items: cap payment retries (owner: Dana); "
                    "add a retry-rate alert (owner: payments team)."
                )
            return draft
        if system == EDITOR.system_prompt:
            impact = next(line for line in notes.splitlines() if line.startswith("Impact:"))
            return f"Postmortem: checkout outage, 2026-03-14\n{sent['inputs']['draft']}\n{impact}"
        raise AssertionError(f"unexpected request to {system[:40]!r}")

    return ScriptedModel(answer, latency=0.01)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="any foreman model name (openai:..., anthropic:..., local)")
    parser.add_argument("--scripted", action="store_true", help="the deterministic scripted model")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    args = parser.parse_args(argv)
    if args.scripted == bool(args.model):
        parser.error("give exactly one of --model M or --scripted")

    def on_event(event: Event) -> None:
        if args.json:
            sys.stdout.write(event.model_dump_json() + "\n")

    try:
        result = await PIPELINE.run(
            NOTES, model=scripted_model() if args.scripted else args.model, on_event=on_event
        )
    except ForemanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(result.answer)
        draft = result.tasks.get("draft")
        rounds = draft.revisions + 1 if draft is not None else 0
        cost = f"${result.cost_usd:.4f}" if result.cost_usd is not None else "cost unknown"
        print(
            f"\n{result.status.value}: {len(result.plan.tasks)} stages, draft written "
            f"{rounds} time(s), {result.calls} calls, {result.usage.total_tokens} tokens, "
            f"{cost}, {result.elapsed:.1f} s"
        )
    return 0 if result.status.finished else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
