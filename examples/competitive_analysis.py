"""Competitive analysis by a tool-calling orchestrator (``mode="delegate"``).

The orchestrator model gets the team's workers as tools. It researches every competitor
at once (one delegation each, in parallel, in its first turn), hands the three reports to
an analyst for the comparison (its second turn), and writes the answer from what came back.

    python examples/competitive_analysis.py --scripted          # deterministic, no provider
    python examples/competitive_analysis.py --model anthropic:claude-sonnet-5-5
    python examples/competitive_analysis.py --scripted --json   # events as JSON lines

``--scripted`` runs on ``foreman.testing.ScriptedModel``: the same engine, approvals,
checkpoints and ledger, with answers written below; the tests run it that way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rich.console import Console
from rich.text import Text

from foreman import ForemanError, Orchestrator
from foreman.events import Event, OrchestratorTurn, RunFinished, TaskFinished, TaskStarted
from foreman.models.base import ModelRequest, ToolCall
from foreman.testing import ScriptedModel

COMPETITORS = ("Acme Boards", "Globex Tasks", "Initech Planner")
REQUEST = (
    "We sell Tasklane, a project-management app for small agencies (USD 8 per seat, "
    f"time tracking built in). Compare it with {', '.join(COMPETITORS)}: pricing, "
    "strengths, weaknesses, and where Tasklane should position itself."
)

#: What the scripted researcher finds about each competitor.
NOTES = {
    "Acme Boards": "- USD 12/seat\n- strong kanban, many integrations\n- no time tracking",
    "Globex Tasks": "- USD 6/seat\n- simple lists, good mobile app\n- weak reporting",
    "Initech Planner": "- USD 20/seat\n- Gantt charts, portfolio views\n- complex setup",
}
COMPARISON = (
    "Globex is cheapest but thin on reporting; Acme leads on integrations but lacks time "
    "tracking; Initech suits large programmes at a premium. Tasklane's opening: built-in "
    "time tracking at a mid price, for agencies that bill by the hour."
)


def scripted_answer(request: ModelRequest) -> str | list[ToolCall]:
    """The orchestrator's turns (requests with tools) and the workers' answers."""
    if request.tools:
        turn = 1 + sum(message.role == "assistant" for message in request.messages)
        if turn == 1:  # research every competitor at once
            return [
                ToolCall(
                    id="",
                    name="researcher",
                    arguments={"instructions": f"Research {name}: pricing, strengths, weaknesses."},
                )
                for name in COMPETITORS
            ]
        if turn == 2:  # compare, from the three reports
            ids = [result.call_id for result in request.messages[-1].tool_results]
            instructions = "Compare these competitors with Tasklane and recommend a position."
            return [
                ToolCall(
                    id="", name="analyst", arguments={"instructions": instructions, "inputs": ids}
                )
            ]
        comparison = json.loads(request.messages[-1].tool_results[0].content)["output"]
        return f"## Competitive analysis\n\n{comparison}\n\n" + "\n\n".join(
            f"**{name}**\n{notes}" for name, notes in NOTES.items()
        )
    work = json.loads(request.messages[0].content)
    if work["inputs"]:
        return COMPARISON
    return next(notes for name, notes in NOTES.items() if name in work["instructions"])


def scripted_latency(request: ModelRequest) -> float:
    """Workers take a moment, so the parallel delegations visibly overlap."""
    return 0.0 if request.tools else 0.05


def show(console: Console, event: Event) -> None:
    match event:
        case OrchestratorTurn(turn=turn, final=True):
            console.print(Text(f"turn {turn}: answered", style="bold"))
        case OrchestratorTurn(turn=turn, delegations=tasks):
            console.print(Text(f"turn {turn}: {len(tasks)} delegation(s)", style="bold"))
            for task in tasks:
                needs = f" (inputs: {', '.join(task.depends_on)})" if task.depends_on else ""
                console.print(Text(f"  {task.id} -> {task.worker}: {task.instructions}{needs}"))
        case TaskStarted(task_id=task_id):
            console.print(Text(f"  started  {task_id}", style="dim"))
        case TaskFinished(task_id=task_id, latency=latency):
            console.print(Text(f"  finished {task_id} ({latency:.2f}s)", style="dim"))
        case RunFinished(result=result):
            console.print(Text(f"\n{result.status.value}, {result.calls} model calls\n"))
            console.print(Text(result.answer or result.error or ""))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="Any foreman model name (default: FOREMAN_MODEL...).")
    source.add_argument("--scripted", action="store_true", help="The scripted model.")
    parser.add_argument("--json", action="store_true", help="Print events as JSON lines.")
    args = parser.parse_args(argv)

    model = (
        ScriptedModel(scripted_answer, latency=scripted_latency) if args.scripted else args.model
    )
    console = Console(highlight=False)

    def on_event(event: Event) -> None:
        if args.json:
            print(event.model_dump_json(), flush=True)
        else:
            show(console, event)

    try:
        orchestrator = Orchestrator(model=model, mode="delegate", max_turns=4)
    except ForemanError as exc:  # an unknown model, say: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    async with orchestrator:
        result = await orchestrator.run(REQUEST, on_event=on_event)
    return 0 if result.answer else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
