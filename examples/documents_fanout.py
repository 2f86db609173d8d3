"""Fan-out: 20 supplier audit reports read in parallel, aggregated into one risk report.

    python examples/documents_fanout.py --scripted          # deterministic, no provider
    python examples/documents_fanout.py --model openai:gpt-5.4-mini
    python examples/documents_fanout.py --scripted --json   # events as JSON lines

Each report is one chunk task for the ``auditor`` (structured ``Findings``); the
``risk_analyst`` merges them five at a time, then merges the merges, into a ``RiskReport``
that must name every supplier: staged synthesis, so no report is dropped to make room.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Literal

from pydantic import BaseModel

from foreman import ForemanError, Worker
from foreman.events import Event
from foreman.models.base import ModelRequest
from foreman.patterns import FanOut
from foreman.testing import ScriptedModel

SUPPLIERS = [
    ("Acme Metals", "EU", "high", "two missed safety audits", 84000),
    ("Borealis Plastics", "NA", "low", "none", 3000),
    ("Cobalt Logistics", "APAC", "medium", "late deliveries in 3 of 12 months", 21000),
    ("Delta Fasteners", "EU", "low", "none", 1500),
    ("Evergreen Paper", "NA", "medium", "single-source pulp supplier", 18000),
    ("Fulcrum Castings", "LATAM", "high", "sanctions screening hit on a sub-supplier", 120000),
    ("Granite Tools", "EU", "low", "minor invoice errors", 2500),
    ("Helix Chemicals", "APAC", "high", "expired hazardous-goods licence", 67000),
    ("Ion Batteries", "APAC", "medium", "capacity shared with a competitor", 30000),
    ("Juniper Textiles", "LATAM", "low", "none", 900),
    ("Kestrel Aviation Parts", "NA", "medium", "quality escapes on two lots", 26000),
    ("Lumen Optics", "EU", "low", "none", 1200),
    ("Meridian Foods", "LATAM", "medium", "cold-chain breaks in summer", 15000),
    ("Nimbus Cloud Hosting", "NA", "high", "no tested disaster recovery plan", 95000),
    ("Orion Packaging", "EU", "low", "none", 800),
    ("Pioneer Rubber", "APAC", "medium", "price escalation clause triggered", 22000),
    ("Quartz Semiconductors", "APAC", "high", "export licence under review", 150000),
    ("Redwood Furniture", "NA", "low", "none", 700),
    ("Summit Electric", "EU", "medium", "key engineer attrition", 12000),
    ("Tidal Water Systems", "LATAM", "low", "none", 600),
]

REQUEST = (
    "Assess supplier risk across these audit reports: every supplier's risk level, issue "
    "and exposure, the high-risk suppliers, the total exposure, and a short summary."
)


def documents() -> list[str]:
    """The 20 reports, one chunk each."""
    return [
        f"Audit report {i:02d}\nSupplier: {name}\nRegion: {region}\nRisk: {risk}\n"
        f"Issue: {issue}\nExposure (USD): {exposure}\n"
        for i, (name, region, risk, issue, exposure) in enumerate(SUPPLIERS, start=1)
    ]


class Findings(BaseModel):
    """What one report says."""

    supplier: str
    region: str
    risk: Literal["low", "medium", "high"]
    issue: str
    exposure_usd: int


class RiskReport(BaseModel):
    """The aggregate: every supplier, and the portfolio view."""

    suppliers: list[Findings]
    high_risk: list[str]
    total_exposure_usd: int
    summary: str


AUDITOR = Worker(
    name="auditor",
    description="Reads one supplier audit report and extracts its findings.",
    system_prompt="You read one supplier audit report and extract the supplier, region, "
    "risk level, main issue and exposure in US dollars. Answer with JSON only.",
    output_schema=Findings,
    max_tokens=400,
)
RISK_ANALYST = Worker(
    name="risk_analyst",
    description="Merges supplier findings into one risk report.",
    system_prompt="You merge supplier findings (single findings or partial risk reports) "
    "into one risk report. Keep every supplier exactly once; list the high-risk ones; "
    "add up the exposure; write a two-sentence summary. Answer with JSON only.",
    output_schema=RiskReport,
    max_tokens=4000,
)


def scripted_model() -> ScriptedModel:
    """A deterministic stand-in for a provider: it reads reports and merges findings the
    way the prompts ask, so the run's structure and data flow are real."""

    def answer(request: ModelRequest) -> str:
        sent = json.loads(request.messages[0].content)
        if request.system == AUDITOR.system_prompt:
            fields = dict(
                line.split(": ", 1) for line in sent["args"]["chunk"].splitlines() if ": " in line
            )
            found = Findings(
                supplier=fields["Supplier"],
                region=fields["Region"],
                risk=fields["Risk"],
                issue=fields["Issue"],
                exposure_usd=int(fields["Exposure (USD)"]),
            )
            return found.model_dump_json()
        suppliers: list[dict[str, Any]] = []
        for value in sent["inputs"].values():
            if isinstance(value, dict) and "suppliers" in value:
                suppliers += value["suppliers"]
            elif isinstance(value, dict) and "supplier" in value:
                suppliers.append(value)
        high = [s["supplier"] for s in suppliers if s["risk"] == "high"]
        total = sum(s["exposure_usd"] for s in suppliers)
        report = RiskReport(
            suppliers=suppliers,
            high_risk=high,
            total_exposure_usd=total,
            summary=f"{len(suppliers)} suppliers assessed; {len(high)} are high risk. "
            f"Total exposure is ${total:,}.",
        )
        return report.model_dump_json()

    return ScriptedModel(answer, latency=0.01)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="any foreman model name (openai:..., anthropic:..., local)")
    parser.add_argument("--scripted", action="store_true", help="the deterministic scripted model")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--max-group", type=int, default=5, help="results per aggregation task")
    args = parser.parse_args(argv)
    if args.scripted == bool(args.model):
        parser.error("give exactly one of --model M or --scripted")
    fanout = FanOut(worker=AUDITOR, aggregate=RISK_ANALYST, max_group=args.max_group)

    def on_event(event: Event) -> None:
        if args.json:
            sys.stdout.write(event.model_dump_json() + "\n")

    try:
        result = await fanout.run(
            REQUEST,
            chunks=documents(),
            model=scripted_model() if args.scripted else args.model,
            on_event=on_event,
        )
    except ForemanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(result.answer)
        merges = sum(1 for task in result.plan.tasks if task.id.startswith("merge-"))
        cost = f"${result.cost_usd:.4f}" if result.cost_usd is not None else "cost unknown"
        print(
            f"\n{result.status.value}: {len(documents())} documents, {len(result.plan.tasks)} "
            f"tasks ({merges} merges), {result.calls} calls, "
            f"{result.usage.total_tokens} tokens, {cost}, {result.elapsed:.1f} s"
        )
    return 0 if result.status.finished else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
