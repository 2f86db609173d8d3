"""A worker with a high-risk tool from a team file, through the real CLI in fresh
processes (tests/scripted_cli.py's scripted model): the run pauses with exit code 5 and
names the tool call's key, `foreman approvals` lists it, `foreman approve RUN KEY` and
`foreman resume` run it once, and `foreman show` lists it."""

from __future__ import annotations

import json
from pathlib import Path

from test_durable_cli import Foreman, events_of, plan

TOOLS = '''
from pathlib import Path


def send_email(instructions: str, inputs: list[str]) -> str:
    """Send an email."""
    with Path(__file__).with_name("outbox.txt").open("a") as outbox:
        outbox.write(instructions + "\\n")
    return "sent"
'''

TEAM = """
include_defaults: false
tools:
  python:
    - {function: mail_tools:send_email, risk: high}
workers:
  - name: mailer
    description: Sends mail.
    system_prompt: You send mail.
    tools: [send_email]
"""


def test_a_high_risk_tool_call_pauses_the_cli_run_until_approved(tmp_path: Path) -> None:
    (tmp_path / "mail_tools.py").write_text(TOOLS)
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    turns = [[{"worker": "send_email", "instructions": "hello [bold]jo[/]"}], "mailed"]
    foreman = Foreman(tmp_path, {"plan": plan(("t1", "mailer", [])), "turns": turns})
    outbox = tmp_path / "outbox.txt"

    first = foreman.run("run", "--json", "--team", str(team), "mail jo")

    assert first.returncode == 5, first.stderr
    run_id = events_of(first.stdout)[-1].result.run_id
    assert f"waiting for approval of t1#1. Decide with `foreman approve {run_id} TASK`" in (
        " ".join(first.stderr.split())
    )
    assert not outbox.exists()
    listed = json.loads(foreman.run("approvals", "--json").stdout)
    assert [(a["task_id"], a["tool"], a["arguments"]["instructions"]) for a in listed] == [
        ("t1#1", "send_email", "hello [bold]jo[/]")
    ]

    assert foreman.run("approve", run_id, "t1#1").returncode == 0
    resumed = foreman.run("resume", run_id, "--json")

    assert resumed.returncode == 0, resumed.stderr
    assert outbox.read_text() == "hello [bold]jo[/]\n"  # once
    shown = foreman.run("show", run_id, "--calls")
    assert "t1#1" in shown.stdout and "send_email" in shown.stdout and "ok" in shown.stdout
