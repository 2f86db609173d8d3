"""``foreman run --allow-tool NAME --tool-root DIR``: built-in tools for one run.

Nothing is enabled unless named. The names and the root (made absolute) are recorded in
the run's settings, so ``foreman resume`` enables the same tools under the same root. The
default team's researcher may use ``read_file``, ``list_files`` and ``fetch``, its coder
those and ``write_file`` and ``shell``; a team file's workers name the ones they may use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from foreman.engine.settings import RunSettings
from foreman.tools.builtin import BUILTIN_TOOLS, builtin_tools
from foreman.workers.registry import Registry

AllowToolOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-tool",
        metavar="NAME",
        help="Enable the built-in tool NAME for this run, for the workers that list it "
        f"(repeat for more): {', '.join(BUILTIN_TOOLS)}. The default researcher may use "
        "read_file, list_files and fetch; the coder read_file, list_files, write_file and "
        "shell. write_file and shell are high risk (a person approves every call), fetch "
        "medium. None is enabled by default.",
        show_default=False,
    ),
]
ToolRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--tool-root",
        metavar="DIR",
        help="The directory read_file, list_files and write_file are confined to and "
        "shell runs in (default: the current directory).",
        show_default=False,
    ),
]


def usage_error(message: str, param: str) -> NoReturn:
    raise typer.BadParameter(message, param_hint=param)


def tool_flags(allowed: list[str] | None, root: Path | None) -> dict[str, Any]:
    """The run settings ``--allow-tool`` and ``--tool-root`` set, checked."""
    names = list(dict.fromkeys(allowed or []))
    for name in names:
        if name not in BUILTIN_TOOLS:
            usage_error(
                f"no built-in tool named {name!r}; the built-in tools are "
                f"{', '.join(BUILTIN_TOOLS)}.",
                "--allow-tool",
            )
    if root is not None and not names:
        usage_error("--tool-root needs a tool to confine: add --allow-tool NAME.", "--tool-root")
    if root is not None and not root.is_dir():
        usage_error(f"{root} is not a directory.", "--tool-root")
    return {
        "builtin_tools": names,
        "tool_root": str((root or Path.cwd()).resolve()) if names else None,
    }


def enable_builtin_tools(workers: Registry, settings: RunSettings) -> None:
    """Add the run's built-in tools to its team's toolbox (a team file's own tool of the
    same name, with its own settings, is kept), for the default researcher and coder
    and the workers that list them."""
    missing = [name for name in settings.builtin_tools if name not in workers.tools]
    for found in builtin_tools(missing, root=settings.tool_root or "."):
        workers.tools.add(found)
    workers.equip_default_workers()


def toolbox_line(workers: Registry) -> str | None:
    """What ``foreman workers`` says of the team's tools (an MCP server's are known only
    once a run starts it)."""
    box = workers.tools
    parts = [f"{tool.name} ({tool.risk.value} risk)" for tool in box.allowed(["*"])]
    servers = [source.name for source in box.sources]
    if servers:
        parts.append(f"the tools of MCP server(s) {', '.join(servers)}")
    return f"Tools: {'; '.join(parts)}" if parts else None
