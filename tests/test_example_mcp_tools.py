"""examples/mcp_tools.py, run as a user would (``--scripted --json``), in its own process:
a worker calls the tools of the MCP server the example starts, and what it reports came
from that server."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from processes import run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mcp_tools.py"
SERVER = ROOT / "examples" / "servers" / "tracker_server.py"


def server_data():
    spec = importlib.util.spec_from_file_location("tracker_server", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ISSUES, module.DETAILS


def test_the_worker_answers_from_the_mcp_servers_tools() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = run([sys.executable, str(EXAMPLE), "--scripted", "--json"], env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    issues, details = server_data()

    called = [e for e in events if e["type"] == "tool_called"]
    finished = {e["call_id"]: e for e in events if e["type"] == "tool_finished"}
    assert [(e["tool"], e["arguments"]) for e in called] == [
        ("tracker_list_issues", {"state": "open"}),
        ("tracker_issue_details", {"number": 101}),
        ("tracker_issue_details", {"number": 103}),
    ]
    assert all(finished[e["call_id"]]["outcome"] == "ok" for e in called)
    # the results are the server's own data, which only examples/servers/ holds
    listed = json.loads(finished[called[0]["call_id"]]["result"])
    assert listed == [issue for issue in issues if issue["state"] == "open"]
    assert finished[called[1]["call_id"]]["result"] == f"#101: {details[101]}"
    assert finished[called[2]["call_id"]]["result"] == f"#103: {details[103]}"
    # the two detail calls ran in one turn, concurrently: both asked before either ended
    position = {id(e): i for i, e in enumerate(events)}
    asked = [position[id(e)] for e in called[1:]]
    ended = [position[id(finished[e["call_id"]])] for e in called[1:]]
    assert max(asked) < min(ended)

    answer = next(e for e in events if e["type"] == "task_finished")["output"]
    assert "(amara)" in answer and "(li)" in answer and details[103] in answer
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["result"]["status"] == "succeeded"
