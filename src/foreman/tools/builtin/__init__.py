"""The built-in tools, each off unless a run or a team file enables it.

==============  =====  ===========================================================
``read_file``   low    a UTF-8 file under a root
``list_files``  low    a directory under a root
``write_file``  high   write a file under a root
``shell``       high   one command, the root as its working directory, a timeout
``fetch``       medium GET an http(s) URL, public hosts only, size and time limits
==============  =====  ===========================================================

``builtin_tool(name, settings)`` builds one from its settings (a team file's
``tools: builtin:`` entry); ``builtin_tools(names, root=...)`` builds several with one
root, as ``foreman run --allow-tool NAME --tool-root DIR`` does. docs/builtin-tools.md
has each one's safety model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foreman.errors import ConfigError
from foreman.tools.base import Tool
from foreman.tools.builtin.fetch import FetchTool
from foreman.tools.builtin.files import FileTools, confined, tool_root
from foreman.tools.builtin.shell import ShellTool

__all__ = ["BUILTIN_TOOLS", "builtin_tool", "builtin_tools", "confined", "tool_root"]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Rooted(_Settings):
    #: The directory the tool is confined to (a team file's: relative to the file).
    root: str = "."


class ReadFileSettings(_Rooted):
    max_chars: int = Field(100_000, ge=1)


class ListFilesSettings(_Rooted):
    max_entries: int = Field(500, ge=1)


class WriteFileSettings(_Rooted):
    max_bytes: int = Field(1_000_000, ge=1)


class ShellSettings(_Rooted):
    timeout: float = Field(60.0, gt=0)
    max_output: int = Field(20_000, ge=100)


class FetchSettings(_Settings):
    timeout: float = Field(20.0, gt=0)
    max_bytes: int = Field(1_000_000, ge=1)
    allow_private: bool = False


#: Each built-in tool's name and the settings it takes.
BUILTIN_TOOLS: dict[str, type[_Settings]] = {
    "read_file": ReadFileSettings,
    "list_files": ListFilesSettings,
    "write_file": WriteFileSettings,
    "shell": ShellSettings,
    "fetch": FetchSettings,
}


def settings_of(name: str, settings: Mapping[str, Any] | None = None) -> _Settings:
    """``settings`` checked for the built-in ``name`` (a ``ConfigError`` naming the key)."""
    if name not in BUILTIN_TOOLS:
        raise ConfigError(
            f"No built-in tool named {name!r}; the built-in tools are {', '.join(BUILTIN_TOOLS)}."
        )
    try:
        return BUILTIN_TOOLS[name].model_validate(dict(settings or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or name}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"Built-in tool {name!r}: {problems}.") from None


def builtin_tool(name: str, settings: Mapping[str, Any] | None = None) -> Tool:
    """The built-in tool ``name`` with ``settings`` (``root``, ``timeout``...)."""
    checked = settings_of(name, settings)
    match checked:
        case ShellSettings():
            return ShellTool(
                checked.root, timeout=checked.timeout, max_output=checked.max_output
            ).tool()
        case FetchSettings():
            return FetchTool(
                timeout=checked.timeout,
                max_bytes=checked.max_bytes,
                allow_private=checked.allow_private,
            ).tool()
        case _:
            assert isinstance(checked, _Rooted)
            limits = checked.model_dump(exclude={"root"})
            return FileTools(checked.root, **limits).tool(name)


def builtin_tools(names: Iterable[str], *, root: str | Path = ".") -> list[Tool]:
    """The built-ins ``names`` with their default limits, the file tools and ``shell``
    confined to ``root``."""
    tools = []
    for name in dict.fromkeys(names):
        rooted = issubclass(BUILTIN_TOOLS.get(name, _Settings), _Rooted)
        tools.append(builtin_tool(name, {"root": str(root)} if rooted else {}))
    return tools
