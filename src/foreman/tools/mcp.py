"""MCP servers as tool sources, with the official ``mcp`` package (2.x).

    notes = MCPSource("notes", command="python", args=["notes_server.py"], risk="low")
    search = MCPSource("search", url="http://127.0.0.1:8000/mcp",
                       headers={"Authorization": "Bearer ..."}, tool_risk={"purge": "high"})
    registry = Registry(workers, tools=Toolbox(sources=[notes, search]))

A stdio server is started by foreman (``command``, ``args``, ``env``, ``cwd``) and stopped
when the source closes; a streamable-HTTP server is reached by ``url`` (with ``headers``).
Each of its tools becomes a ``Tool``: the server's name (after ``prefix``), description
and input schema. What a tool may do is the user's word, never the server's: its risk is
``tool_risk[name]``, else the source's ``risk`` (``medium`` unless said: a person approves
each call unless the run auto-approves medium); the server's annotations (``readOnlyHint``
and the like) are hints from code foreman does not control, and are ignored.
``idempotent`` is ``True`` (every tool), ``False`` or a list of tool names.

The connection lives in one asyncio task of its own, from ``open`` to ``aclose``: the
``mcp`` client is built on anyio, whose cancel scopes must be entered and left by the
same task, and the toolbox opens a source from whichever task needs it first. Calls are
sent from the callers' tasks, each bounded by ``timeout``; the call's idempotency key
travels in the request's ``_meta`` (``foreman/idempotency-key``) for servers that
deduplicate. A result marked ``isError``, a protocol error or a timeout is a
``ToolError``: the model hears it, the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
from typing import IO, Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CallToolResult,
    EmbeddedResource,
    TextContent,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foreman.errors import ConfigError, ToolError
from foreman.tools.base import RiskLevel, Tool, ToolContext, ToolSource

#: The ``_meta`` key a call's idempotency key travels under.
IDEMPOTENCY_META_KEY = "foreman/idempotency-key"
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_\-]")
#: Characters of a stdio server's stderr quoted to explain a server that would not start.
_STDERR_TAIL = 2_000


class MCPServerSpec(BaseModel):
    """What an MCP tool source is: how to reach the server, and what its tools may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")
    #: A stdio server: the program foreman starts, its arguments, extra environment
    #: variables (over a minimal inherited set: PATH, HOME...) and working directory.
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: str | None = None
    #: A streamable-HTTP server: its endpoint (``http://host:port/mcp``) and headers.
    url: str | None = None
    headers: dict[str, str] | None = None
    risk: RiskLevel = RiskLevel.medium
    tool_risk: dict[str, RiskLevel] = Field(default_factory=dict)
    idempotent: bool | tuple[str, ...] = False
    #: Put before each tool's name (``notes_`` makes ``search`` ``notes_search``).
    prefix: str = ""
    #: Seconds one call may take; seconds the server may take to start and list its tools.
    timeout: float = Field(60.0, gt=0)
    startup_timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (a stdio server) or 'url' (an HTTP server)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("'args', 'env' and 'cwd' are for a stdio server ('command')")
        if self.command is not None and self.headers:
            raise ValueError("'headers' are for an HTTP server ('url')")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"'url' must be an http or https URL, not {self.url!r}")
        return self

    def is_idempotent(self, tool: str) -> bool:
        return self.idempotent if isinstance(self.idempotent, bool) else tool in self.idempotent


class MCPSource(ToolSource):
    """The tools of one MCP server (stdio or streamable HTTP); see the module docstring."""

    def __init__(self, name: str, **spec: Any) -> None:
        try:
            self.spec = MCPServerSpec(name=name, **spec)
        except ValidationError as exc:
            raise ConfigError(f"MCP server {name!r}: {_brief(exc)}.") from None
        self.name = name
        self._tools: list[Tool] | None = None
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._ended: str | None = None
        self._lock: asyncio.Lock | None = None
        #: A stdio server's stderr, kept to explain a server that would not start.
        self._stderr: IO[str] | None = None

    async def open(self) -> list[Tool]:
        """Start or connect to the server and list its tools (once; later calls return
        the same tools while it stays open)."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._tools is not None and self._client is not None:
                return self._tools
            await self._halt()
            listed: asyncio.Future[list[Tool]] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._ended = None
            self._task = asyncio.create_task(self._serve(listed), name=f"mcp:{self.name}")
            try:
                async with asyncio.timeout(self.spec.startup_timeout):
                    self._tools = await asyncio.shield(listed)
            except TimeoutError:
                await self._halt(grace=0)  # never came up: nothing to close gracefully
                raise ConfigError(
                    f"MCP server {self.name!r} did not start and list its tools within "
                    f"{self.spec.startup_timeout:g} s.{self._stderr_note()}"
                ) from None
            except BaseException:
                await self._halt()
                raise
            return self._tools

    async def aclose(self) -> None:
        """Close the session and stop a stdio server; safe to call more than once."""
        await self._halt()
        self._tools = None

    async def call_tool(
        self, tool: str, arguments: dict[str, Any], context: ToolContext
    ) -> CallToolResult:
        client = self._client
        if client is None:
            why = f" ({self._ended})" if self._ended else ""
            raise ToolError(f"MCP server {self.name!r} is not connected{why}.")
        try:
            return await client.call_tool(
                tool,
                arguments,
                read_timeout_seconds=self.spec.timeout,
                meta={IDEMPOTENCY_META_KEY: context.idempotency_key},
            )
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:  # the server died: the next open restarts it
                self._client, self._ended = None, "the connection closed"
            if exc.code == REQUEST_TIMEOUT:
                raise ToolError(
                    f"{tool} (MCP server {self.name!r}) took longer than {self.spec.timeout:g} s."
                ) from None
            raise ToolError(f"{tool} (MCP server {self.name!r}): {exc.message}") from None
        except ValidationError as exc:
            raise ToolError(
                f"{tool} (MCP server {self.name!r}) sent a malformed result: {_brief(exc)}"
            ) from None

    # --- the session's own task ----------------------------------------------------------

    async def _serve(self, listed: asyncio.Future[list[Tool]]) -> None:
        """Connect, list the tools, then hold the session open until ``_halt``."""
        assert self._stop is not None
        stderr = self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(Client(self._transport(stack, stderr)))
                tools = await self._list(client)
                self._client = client
                listed.set_result(tools)
                await self._stop.wait()
        except Exception as exc:  # a server that fails to start, or dies: said, not raised
            self._ended = _why(exc)
            if not listed.done():
                listed.set_exception(self._unusable(exc))
        finally:
            self._client = None
            self._ended = self._ended or "closed"
            if not listed.done():
                listed.cancel()
            stderr.close()

    def _transport(self, stack: contextlib.AsyncExitStack, stderr: IO[str]) -> Any:
        spec = self.spec
        if spec.command is not None:
            parameters = StdioServerParameters(
                command=spec.command, args=list(spec.args), env=spec.env, cwd=spec.cwd
            )
            return stdio_client(parameters, errlog=stderr)
        assert spec.url is not None
        # the SDK's own defaults: a long read for the server's event stream (each call is
        # bounded by ``timeout`` on its own)
        http = httpx2.AsyncClient(headers=spec.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        stack.push_async_callback(http.aclose)
        return streamable_http_client(spec.url, http_client=http)

    async def _list(self, client: Client) -> list[Tool]:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a server whose pages never end cannot hang the run
            page = await client.list_tools(cursor=cursor)
            tools += [
                MCPTool(
                    self,
                    remote=listed.name,
                    name=tool_name(self.spec.prefix + listed.name),
                    description=listed.description or listed.title or "",
                    parameters=listed.input_schema,
                    risk=self.spec.tool_risk.get(listed.name, self.spec.risk),
                    idempotent=self.spec.is_idempotent(listed.name),
                )
                for listed in page.tools
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
        unknown = set(self.spec.tool_risk) - {t.remote for t in tools if isinstance(t, MCPTool)}
        if unknown:
            raise ConfigError(
                f"tool_risk names tools the server does not offer: {', '.join(sorted(unknown))}"
            )
        return tools

    async def _halt(self, grace: float = 10) -> None:
        """Stop the session's task: asked to close (``grace`` seconds), then cancelled."""
        task, self._task = self._task, None
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return  # ended, or left behind by an event loop that is gone (asyncio.run)
        if self._stop is not None:
            self._stop.set()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _unusable(self, exc: BaseException) -> ConfigError:
        if isinstance(leaf := _leaf(exc), ConfigError):  # its tools do not fit the settings
            return ConfigError(f"MCP server {self.name!r}: {leaf}.")
        return ConfigError(
            f"MCP server {self.name!r} could not be reached: {self._ended}.{self._stderr_note()}"
        )

    def _stderr_note(self) -> str:
        stderr = self._stderr
        if stderr is None or stderr.closed:
            return ""
        stderr.seek(0)
        text = stderr.read()[-_STDERR_TAIL:].strip()
        return f" Its stderr: {' | '.join(text.splitlines()[-5:])}" if text else ""


class MCPTool(Tool):
    """One tool of an MCP server, called through its source's session."""

    def __init__(
        self,
        source: MCPSource,
        *,
        remote: str,
        name: str,
        description: str,
        parameters: dict[str, Any],
        risk: RiskLevel,
        idempotent: bool,
    ) -> None:
        self.source = source
        self.remote = remote
        self.name = name
        self.description = description
        self.parameters = parameters
        self.risk = risk
        self.idempotent = idempotent
        # the source's own timeout answers first, with the server named
        self.timeout = source.spec.timeout + 5

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        result = await self.source.call_tool(self.remote, arguments, context)
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"{self.name} failed (the server gave no reason).")
        return text


def tool_name(name: str) -> str:
    """A server's tool name as providers accept it (letters, digits, ``_`` and ``-``, at
    most 64): ``notes.search`` is offered as ``notes_search`` (and still called by its own
    name on the server)."""
    return _NOT_IN_NAMES.sub("_", name)[:64]


def result_text(result: CallToolResult) -> str:
    """What the model is shown of a result: its text blocks, other blocks named, and the
    structured content when there is no text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource) and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            kind = getattr(block, "mime_type", None) or getattr(block, "uri", None) or ""
            parts.append(f"[{block.type} {kind}]".replace(" ]", "]"))
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return "\n".join(parts)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _why(exc: BaseException) -> str:
    """The first real error inside anyio's exception groups, on one line."""
    exc = _leaf(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'server'}: {e['msg']}".removeprefix(
            "server: Value error, "
        )
        for e in exc.errors()
    )
