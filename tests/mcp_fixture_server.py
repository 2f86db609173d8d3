"""A real MCP server for the tests, written with the ``mcp`` package's MCPServer (the
FastMCP of mcp 1.x).

    python tests/mcp_fixture_server.py            # stdio
    python tests/mcp_fixture_server.py --http     # streamable HTTP on a free localhost
                                                  # port, printed as the first line
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("foreman-fixture")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def whoami(note: str, ctx: Context) -> str:
    """Say what the server saw of this call: the note, the process, the idempotency key
    and the Authorization header (HTTP only)."""
    meta = ctx.request_context.meta or {}
    headers = ctx.headers or {}
    return json.dumps(
        {
            "note": note,
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "env": os.environ.get("FIXTURE_FLAVOUR"),
            "key": meta.get("foreman/idempotency-key"),
            "auth": headers.get("authorization"),
        }
    )


@server.tool(name="notes.search")
def search_notes(query: str) -> str:
    """A tool whose name has a dot, which model providers do not accept."""
    return f"no notes about {query}"


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with the reason given (an anticipated failure: its text reaches the
    client, where any other exception shows only as 'Error executing tool refuse')."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after some seconds."""
    await asyncio.sleep(seconds)
    return "finally"


def serve_http() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], flush=True)
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    if "--fail" in sys.argv:
        print("the fixture server was told to fail", file=sys.stderr)
        raise SystemExit(3)
    if "--http" in sys.argv:
        serve_http()
    else:
        server.run()
