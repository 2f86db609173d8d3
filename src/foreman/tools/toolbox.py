"""The registry's tools: Python tools added directly, and sources (MCP servers) opened on
first use. A worker's allow-list picks from it; nothing outside the list is ever offered
to the worker's model or run for it, whatever the model asks."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Iterable

from foreman.errors import ConfigError
from foreman.tools.base import Tool, ToolSource


class Toolbox:
    """Tools by name. Names are unique across direct tools and every source's tools."""

    def __init__(self, tools: Iterable[Tool] = (), sources: Iterable[ToolSource] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        self._opened: set[str] = set()
        self._from_sources: set[str] = set()
        self._lock = asyncio.Lock()
        for item in tools:
            self.add(item)
        for source in sources:
            self.add_source(source)

    def add(self, tool: Tool) -> None:
        """Add a tool; a later tool with the same name replaces an earlier direct one."""
        self._tools[tool.name] = tool

    def add_source(self, source: ToolSource) -> None:
        if any(known.name == source.name for known in self._sources):
            raise ConfigError(f"Two tool sources are named {source.name!r}.")
        self._sources.append(source)

    @property
    def sources(self) -> list[ToolSource]:
        return list(self._sources)

    async def open(self) -> None:
        """Open every source and add its tools (a name clash is an error). A source open
        already answers with its tools at once; one whose server died since starts again."""
        async with self._lock:
            for source in self._sources:
                tools = await source.open()
                if source.name in self._opened:
                    continue
                for found in tools:
                    if found.name in self._tools:
                        await source.aclose()
                        raise ConfigError(
                            f"Tool source {source.name!r} offers a tool named "
                            f"{found.name!r}, which another tool already has."
                        )
                    self._tools[found.name] = found
                    self._from_sources.add(found.name)
                self._opened.add(source.name)

    def names(self) -> list[str]:
        """Names of the tools known so far (a source's appear once it is opened)."""
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def allowed(self, allow_list: Iterable[str]) -> list[Tool]:
        """The tools an allow-list names: exact names or shell-style patterns (``files_*``)."""
        patterns = list(allow_list)
        return [
            known
            for name, known in self._tools.items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        ]

    async def aclose(self) -> None:
        """Close every source; their tools leave the box until it is opened again."""
        for source in self._sources:
            await source.aclose()
        for name in self._from_sources:
            self._tools.pop(name, None)
        self._from_sources.clear()
        self._opened.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)
