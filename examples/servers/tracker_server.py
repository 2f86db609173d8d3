"""A small MCP server for examples/mcp_tools.py: a project's issue tracker, read-only.

    python examples/servers/tracker_server.py      # speaks MCP over stdio

Written with the ``mcp`` package's ``MCPServer``; foreman starts it as a stdio tool source
(``foreman.tools.mcp.MCPSource``) and stops it when the run's orchestrator closes.
"""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ISSUES = [
    {
        "number": 101,
        "title": "Crash when the config file is empty",
        "state": "open",
        "owner": "amara",
        "labels": ["bug", "blocks-1.0"],
    },
    {
        "number": 102,
        "title": "Document the plugin API",
        "state": "open",
        "owner": "jonas",
        "labels": ["docs"],
    },
    {
        "number": 103,
        "title": "Migrations lose the default locale",
        "state": "open",
        "owner": "li",
        "labels": ["bug", "blocks-1.0"],
    },
    {
        "number": 104,
        "title": "Faster cold start",
        "state": "closed",
        "owner": "amara",
        "labels": ["performance"],
    },
]
DETAILS = {
    101: "Reading an empty config raises KeyError in load_settings(); fix in review (#311).",
    102: "Outline agreed; the reference pages are not started.",
    103: "Upgrading from 0.9 resets the locale to en-US; a failing test reproduces it.",
    104: "Cold start went from 1.8 s to 0.6 s with lazy imports.",
}

server = MCPServer("tracker")


@server.tool()
def list_issues(state: str = "open") -> str:
    """List the tracker's issues in a state ('open' or 'closed'), as JSON."""
    if state not in ("open", "closed"):
        raise ToolError(f"state must be 'open' or 'closed', not {state!r}")
    return json.dumps([issue for issue in ISSUES if issue["state"] == state])


@server.tool()
def issue_details(number: int) -> str:
    """The latest status note of one issue."""
    if number not in DETAILS:
        raise ToolError(f"no issue #{number}")
    return f"#{number}: {DETAILS[number]}"


if __name__ == "__main__":
    server.run()
