"""Replanning, end to end: "Refactor the billing module to use the new invoice schema."

The orchestrator starts with a two-step plan (research, then design) and revises it as the
workers report, with the ``on-hint`` policy (``--replan always`` reconsiders after every
task):

1. research reports files in four modules, and asks for a replan: the pending design task
   is changed so it gets that breakdown (plan version 2);
2. design says three parts are independent: three implementation tasks are added, which
   run in parallel, and a review after them (version 3);
3. the reviewer flags a call site nobody updated: a follow-up task patches it (version 4).

    python examples/billing_refactor.py --scripted          # deterministic, no provider
    python examples/billing_refactor.py --model openai:gpt-5.4-mini
    python examples/billing_refactor.py --scripted --json   # the events, as JSON lines

``--scripted`` answers every call from the script below (the tests run it that way); with
``--model`` the same team and request go to a real model, whose plan and revisions are its
own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from foreman import ForemanError, Orchestrator
from foreman.events import Event, PlanRevised
from foreman.models.base import ModelRequest
from foreman.store.memory import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers.spec import Worker

REQUEST = "Refactor the billing module to use the new invoice schema."

TEAM = [
    Worker(
        name="researcher",
        description="Finds the code a change affects: files, modules, call sites.",
        system_prompt="You are a code researcher. List the files and call sites affected.",
    ),
    Worker(
        name="designer",
        description="Turns a change into a design: parts, their order, what is independent.",
        system_prompt="You are a software designer. Split the change into parts.",
    ),
    Worker(
        name="coder",
        description="Implements one part of a change and reports the diff.",
        system_prompt="You are a careful programmer. Implement exactly the part asked.",
    ),
    Worker(
        name="reviewer",
        description="Reviews implemented changes against the research and lists what is missing.",
        system_prompt="You are a code reviewer. Check every call site was updated.",
    ),
]

MODULES = ["billing/invoices.py", "billing/payments.py", "billing/tax.py", "reports/export.py"]

# --- the scripted model: every answer of the scenario ----------------------------------

PLAN = {
    "tasks": [
        {
            "id": "t1",
            "worker": "researcher",
            "instructions": "Find every file that uses the old invoice schema.",
            "depends_on": [],
        },
        {
            "id": "t2",
            "worker": "designer",
            "instructions": "Design the refactor to the new invoice schema.",
            "depends_on": ["t1"],
        },
    ]
}

RESEARCH = (
    "The old invoice schema is used in four modules:\n"
    "- billing/invoices.py: Invoice model, build_invoice()\n"
    "- billing/payments.py: apply_payment() reads invoice.total_cents\n"
    "- billing/tax.py: tax_lines() reads invoice.items\n"
    "- reports/export.py: export_csv() reads invoice.customer_name\n"
    "REPLAN: four modules are affected; the design should take this breakdown."
)

DESIGN = (
    "Parts: (A) invoices and payments move to InvoiceV2 together; (B) tax reads line items "
    "from InvoiceV2.lines; (C) reports read InvoiceV2.customer. A, B and C are independent.\n"
    "REPLAN: three independent parts can be implemented in parallel."
)

PARTS = {
    "A": "Implement part A: move billing/invoices.py and billing/payments.py to InvoiceV2.",
    "B": "Implement part B: make billing/tax.py read InvoiceV2.lines.",
    "C": "Implement part C: make reports/export.py read InvoiceV2.customer.",
}

REVIEW = (
    "Parts A, B and C are in. Missing: reports/export.py also calls legacy_total(invoice) in "
    "export_summary(), which still expects the old schema.\n"
    "REPLAN: one call site is missing: reports/export.py export_summary()."
)

FOLLOW_UP = "Patch the missing call site: export_summary() in reports/export.py uses InvoiceV2."


def _revision(message: dict[str, Any]) -> dict[str, Any]:
    """The orchestrator's revision, from the state of the plan it is shown."""
    state = {task["id"]: task for task in message["plan"]}
    done = {tid for tid, task in state.items() if task["state"] == "succeeded"}
    keep = {"reason": "The plan still fits.", "add": [], "change": [], "drop": []}
    if "t1" in done and "four modules" not in state["t2"]["instructions"]:
        design = (
            "Design the refactor to the new invoice schema across the four modules the "
            f"research found ({', '.join(MODULES)}); say which parts are independent."
        )
        return {
            "reason": "Research found four affected modules; the design gets that breakdown.",
            "add": [],
            "change": [{**state["t2"], "instructions": design}],
            "drop": [],
        }
    if "t2" in done and "t3" not in state:
        coders = [
            {"id": f"t{n}", "worker": "coder", "instructions": PARTS[part], "depends_on": ["t2"]}
            for n, part in zip((3, 4, 5), "ABC", strict=True)
        ]
        review = {
            "id": "t6",
            "worker": "reviewer",
            "instructions": "Review parts A, B and C against the research; list any call "
            "site still on the old schema.",
            "depends_on": ["t1", "t3", "t4", "t5"],
        }
        return {
            "reason": "The design has three independent parts: implement them in parallel, "
            "then review.",
            "add": [*coders, review],
            "change": [],
            "drop": [],
        }
    if "t6" in done and "t7" not in state:
        patch = {"id": "t7", "worker": "coder", "instructions": FOLLOW_UP, "depends_on": ["t6"]}
        return {
            "reason": "The review found a missing call site in reports/export.py.",
            "add": [patch],
            "change": [],
            "drop": [],
        }
    return keep


def scripted_answer(request: ModelRequest) -> str:
    """Every call of the scenario: plan, revisions, workers, synthesis."""
    properties = (request.output_schema or {}).get("properties", {})
    if "tasks" in properties:
        return json.dumps(PLAN)
    if "add" in properties:
        return json.dumps(_revision(json.loads(request.messages[0].content)))
    system = request.system or ""
    text = request.messages[-1].content
    if system.startswith("You are a code researcher"):
        return RESEARCH
    if system.startswith("You are a software designer"):
        return DESIGN
    if system.startswith("You are a careful programmer"):
        for part, instructions in PARTS.items():
            if instructions in text:
                return f"Part {part} done: diff applied, tests pass."
        return "Patched export_summary() to read InvoiceV2.total; tests pass."
    if system.startswith("You are a code reviewer"):
        return REVIEW
    return (
        "The billing module now uses the new invoice schema: invoices and payments (A), tax "
        "(B) and reports (C) were migrated in parallel, and the call site the review found "
        "in export_summary() was patched."
    )


def scripted_model() -> ScriptedModel:
    # A little latency per worker call, so the parallel tasks overlap as real ones do.
    def latency(request: ModelRequest) -> float:
        return 0.02 if (request.system or "").startswith("You are a careful") else 0.0

    return ScriptedModel(scripted_answer, name="scripted", latency=latency)


# --- running it ------------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="any model foreman knows, e.g. openai:gpt-5.4-mini")
    source.add_argument("--scripted", action="store_true", help="the deterministic script")
    parser.add_argument("--json", action="store_true", help="print the events as JSON lines")
    parser.add_argument("--replan", choices=("on-hint", "always"), default="on-hint")
    args = parser.parse_args(argv)

    model = scripted_model() if args.scripted else args.model
    try:
        orchestrator = Orchestrator(
            TEAM,
            model=model,
            store=MemoryStore(),
            replan=args.replan,
            max_replans=5,
            assembly="synthesis",
        )
    except ForemanError as exc:  # an unknown model, say: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    console = Console()

    def on_event(event: Event) -> None:
        if args.json:
            sys.stdout.write(event.model_dump_json() + "\n")
        elif isinstance(event, PlanRevised):
            console.print(
                Text(f"plan v{event.version}: {event.reason} ", style="bold"),
                Text(f"(+{event.added} ~{event.changed} -{event.dropped})", style="dim"),
            )

    async with orchestrator:
        result = await orchestrator.run(REQUEST, on_event=on_event)
        versions = await orchestrator.store.list_plans(result.run_id)
    if not args.json:
        table = Table("version", "reason", "added", "changed", "tasks")
        for version in versions:
            table.add_row(
                str(version.version),
                Text(version.reason or "first plan"),
                Text(", ".join(version.changes.added)),
                Text(", ".join(version.changes.changed)),
                str(len(version.plan.tasks)),
            )
        console.print(table)
        console.print(Text(result.answer or result.error or ""))
        console.print(Text(f"{result.status.value} · {result.usage.total_tokens} tokens"))
    return 0 if result.status.value == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
