"""A hierarchy with an approval deep inside: release notes, written, then reviewed and
published by a review team that is itself one worker of the top-level orchestrator.

    python examples/nested_review.py --scripted             # pauses: exit 5, like the CLI
    python examples/nested_review.py --scripted --approve   # approved: it completes
    python examples/nested_review.py --model openai:gpt-5.4-mini --db runs.db
    python examples/nested_review.py --scripted --json      # events as JSON lines

top level (researcher, review) -> review team (fact_checker, editor, publisher). The
``publisher`` is high risk: it asks a person before it runs. With no approver the nested
review run pauses (``waiting_approval``), so the top-level task waits and the top-level run
pauses too. With ``--db`` the pause is durable: ``foreman approvals --db runs.db`` shows the
request (with its path top -> nested run), ``foreman approve --db runs.db RUN.t2 TASK``
decides it, and ``--resume RUN`` (or ``foreman resume``) continues the nested run where it
paused, without repeating its finished tasks. What the review team spent is part of the
top-level task's usage and of the top-level run's books.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from foreman import ForemanError, Orchestrator, Worker
from foreman.cli.common import EXIT_CODES
from foreman.engine.nesting import child_run_id
from foreman.engine.prompts import SYNTHESIS_SYSTEM
from foreman.events import Event
from foreman.models.base import ModelRequest
from foreman.results import RunResult
from foreman.store.base import Approval, Store
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.nested import TeamWorker

REQUEST = "Write the release notes for version 2.4 of the billing service and publish them."

RESEARCHER = Worker(
    name="researcher",
    description="Collects what changed in a release from its changelog.",
    system_prompt="You list the user-visible changes of a release, one per line.",
)
FACT_CHECKER = Worker(
    name="fact_checker",
    description="Checks every claim of a draft against the facts it was given.",
    system_prompt="You check each claim of the draft against the listed changes and "
    "report any claim that is not supported.",
)
EDITOR = Worker(
    name="editor",
    description="Turns checked facts into release notes for customers.",
    system_prompt="You write short, friendly release notes from checked facts.",
)
PUBLISHER = Worker(
    name="publisher",
    description="Publishes release notes on the public status page.",
    system_prompt="You publish the given release notes and answer with their URL.",
    risk="high",  # a person approves before anything is published
)


def orchestrators(model, store: Store, approve) -> Orchestrator:
    """The top-level orchestrator, whose ``review`` worker is a whole team."""
    review_team = Orchestrator([FACT_CHECKER, EDITOR, PUBLISHER], model=model)
    review = TeamWorker(
        name="review",
        description="Checks, edits and publishes release notes (a team of three).",
        team=review_team,
    )
    return Orchestrator([RESEARCHER, review], model=model, store=store, approve=approve)


def scripted_model() -> ScriptedModel:
    """A deterministic stand-in for a provider: both planners, every worker, both
    syntheses, answering from what they were actually sent."""

    def answer(request: ModelRequest) -> str:
        schema = request.output_schema or {}
        sent = request.messages[0].content
        if "tasks" in schema.get("properties", {}):  # a planner
            return json.dumps(review_plan() if "publisher" in sent + request.system else top_plan())
        if request.system == SYNTHESIS_SYSTEM:
            results = json.loads(sent)["results"]
            return "\n".join(str(result.get("output", "")) for result in results)
        if request.system == RESEARCHER.system_prompt:
            return "- invoices can be paid in instalments\n- VAT shown per line"
        if request.system == FACT_CHECKER.system_prompt:
            return "All claims are supported by the changelog."
        if request.system == EDITOR.system_prompt:
            return "Billing 2.4: pay invoices in instalments, and see VAT on every line."
        if request.system == PUBLISHER.system_prompt:
            return "Published: https://status.example.com/releases/billing-2.4"
        raise AssertionError(f"unexpected request to {request.system[:40]!r}")

    return ScriptedModel(answer)


def top_plan() -> dict:
    return {
        "tasks": [
            {"id": "t1", "worker": "researcher", "instructions": "List the changes in 2.4."},
            {
                "id": "t2",
                "worker": "review",
                "instructions": "Check, edit and publish release notes for these changes.",
                "depends_on": ["t1"],
            },
        ]
    }


def review_plan() -> dict:
    return {
        "tasks": [
            {"id": "check", "worker": "fact_checker", "instructions": "Check the changes."},
            {
                "id": "edit",
                "worker": "editor",
                "instructions": "Write the release notes.",
                "depends_on": ["check"],
            },
            {
                "id": "publish",
                "worker": "publisher",
                "instructions": "Publish the release notes.",
                "depends_on": ["edit"],
            },
        ]
    }


def approver(approval: Approval) -> bool:
    print(f"approving {approval.task_id} ({approval.worker}) of {approval.run_id}", file=sys.stderr)
    return True


async def run(args: argparse.Namespace) -> RunResult:
    store: Store = SQLiteStore(Path(args.db)) if args.db else MemoryStore()
    model = scripted_model() if args.scripted else args.model

    def on_event(event: Event) -> None:
        if args.json:
            sys.stdout.write(event.model_dump_json() + "\n")

    async with orchestrators(model, store, approver if args.approve else None) as top:
        if args.resume:
            return await top.resume(args.resume, on_event=on_event)
        return await top.run(REQUEST, on_event=on_event)


def report(result: RunResult) -> None:
    nested = child_run_id(result.run_id, "t2")
    review = result.tasks.get("t2")
    if result.answer:
        print(result.answer)
    cost = f"${result.cost_usd:.4f}" if result.cost_usd is not None else "cost unknown"
    print(
        f"\nrun {result.run_id}: {result.status.value}, {result.calls} calls, "
        f"{result.usage.total_tokens} tokens, {cost} (the nested review run included)"
    )
    if review is not None:
        print(
            f"  t2 review -> nested run {nested}: {review.status.value}, "
            f"{review.usage.total_tokens} tokens"
        )
    if result.status.value == "waiting_approval":
        print(
            f"\nThe nested run {nested} waits for approval of its publish task. Run again "
            "with --approve, or with --db: `foreman approve --db DB "
            f"{nested} publish`, then --resume {result.run_id}.",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="any foreman model name (openai:..., anthropic:..., local)")
    parser.add_argument("--scripted", action="store_true", help="the deterministic scripted model")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--approve", action="store_true", help="approve the publisher's task")
    parser.add_argument("--db", help="a SQLite run store, so a paused run can be resumed")
    parser.add_argument("--resume", metavar="RUN", help="resume this top-level run (with --db)")
    args = parser.parse_args(argv)
    if args.scripted == bool(args.model):
        parser.error("give exactly one of --model M or --scripted")
    if args.resume and not args.db:
        parser.error("--resume needs the --db the run is stored in")
    try:
        result = asyncio.run(run(args))
    except ForemanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        report(result)
    return EXIT_CODES[result.status]


if __name__ == "__main__":
    sys.exit(main())
