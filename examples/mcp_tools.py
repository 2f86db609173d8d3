"""A worker that uses the tools of a local MCP server: "What blocks the 1.0 release?"

The example starts its own MCP server (examples/servers/tracker_server.py, an issue
tracker) as a stdio tool source; the ``triager`` worker may call its two tools, prefixed
``tracker_``. It lists the open issues, asks for the details of each one labelled
``blocks-1.0`` (in parallel, in one turn), and answers from what the server returned.

    python examples/mcp_tools.py --scripted          # deterministic, no provider
    python examples/mcp_tools.py --model openai:gpt-5.4-mini
    python examples/mcp_tools.py --scripted --json   # the events, as JSON lines

``--scripted`` stands in for the model only: it decides its calls from the tool results
it is sent, so everything it reports came from the server. With ``--model`` a real model
plans and makes the calls itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from foreman import ForemanError, Orchestrator, Registry, Toolbox, Worker
from foreman.events import Event, ToolCalled, ToolFinished
from foreman.models.base import ModelRequest, ToolCall
from foreman.store.memory import MemoryStore
from foreman.testing import ScriptedModel
from foreman.tools.mcp import MCPSource

REQUEST = "Which open issues block the 1.0 release, who owns them, and where do they stand?"
SERVER = Path(__file__).resolve().parent / "servers" / "tracker_server.py"

TRIAGER = Worker(
    name="triager",
    description="Answers questions about the project's issues from its issue tracker.",
    system_prompt="You triage issues. Use the tracker tools to look up the issues the task "
    "asks about, then answer with each issue's number, title, owner and status.",
    tools=("tracker_*",),
)


def tracker() -> MCPSource:
    """The tracker server, started by foreman over stdio; its tools only read."""
    return MCPSource(
        "tracker",
        command=sys.executable,
        args=[str(SERVER)],
        risk="low",
        idempotent=True,
        prefix="tracker_",
    )


# --- the scripted model: its calls come from the results it is sent ---------------------

PLAN = {
    "tasks": [
        {"id": "t1", "worker": "triager", "instructions": REQUEST, "depends_on": []},
    ]
}


def scripted_answer(request: ModelRequest) -> str | list[ToolCall]:
    if "tasks" in (request.output_schema or {}).get("properties", {}):
        return json.dumps(PLAN)
    results = [r.content for m in request.messages for r in m.tool_results]
    if not results:  # first turn: what is open?
        return [ToolCall(id="", name="tracker_list_issues", arguments={"state": "open"})]
    if len(results) == 1:  # second turn: the details of each blocker, in parallel
        blockers = [i for i in json.loads(results[0]) if "blocks-1.0" in i["labels"]]
        return [
            ToolCall(id="", name="tracker_issue_details", arguments={"number": i["number"]})
            for i in blockers
        ]
    issues = {i["number"]: i for i in json.loads(results[0])}
    lines = []
    for note in results[1:]:
        number = int(note.split(":", 1)[0].lstrip("#"))
        issue = issues[number]
        lines.append(f"- #{number} {issue['title']} ({issue['owner']}): {note.split(': ', 1)[1]}")
    return f"{len(lines)} open issues block 1.0:\n" + "\n".join(lines)


# --- running it ------------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="any model foreman knows, e.g. openai:gpt-5.4-mini")
    source.add_argument("--scripted", action="store_true", help="the deterministic script")
    parser.add_argument("--json", action="store_true", help="print the events as JSON lines")
    args = parser.parse_args(argv)

    model = ScriptedModel(scripted_answer) if args.scripted else args.model
    registry = Registry([TRIAGER], tools=Toolbox(sources=[tracker()]))
    try:
        orchestrator = Orchestrator(registry, model=model, store=MemoryStore(), assembly="concat")
    except ForemanError as exc:  # an unknown model, say: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    console = Console()

    def on_event(event: Event) -> None:
        if args.json:
            sys.stdout.write(event.model_dump_json() + "\n")
        elif isinstance(event, ToolCalled):
            console.print(Text(f"→ {event.tool} {json.dumps(event.arguments)}", style="dim"))
        elif isinstance(event, ToolFinished):
            console.print(Text(f"← {event.tool}: {event.outcome} ({event.latency:.2f} s)"))

    async with orchestrator:  # closing it stops the MCP server
        result = await orchestrator.run(REQUEST, on_event=on_event)
    if not args.json:
        console.print(Text(result.answer or result.error or ""))
        console.print(Text(f"{result.status.value} · {result.usage.total_tokens} tokens"))
    return 0 if result.status.value == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
