"""A team file's ``tools:`` section: the tools its workers may name in their ``tools:``.

    tools:
      builtin:                     # foreman's own (docs/builtin-tools.md)
        read_file: {root: docs}    # paths relative to the team file's folder
        fetch: {}
      mcp:                         # MCP servers (docs/mcp.md)
        - name: notes
          command: python
          args: [notes_server.py]  # started in the team file's folder unless cwd: says
          risk: low
        - name: search
          url: https://search.example.com/mcp
          headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}
      python:                      # module:function, imported from the file's folder too
        - my_tools:send_email
        - {function: my_tools:lookup, risk: medium, idempotent: true}

``builtin:`` may also be a list of names (each with its defaults, rooted at the team
file's folder). ``${NAME}`` in an MCP server's ``env`` or ``headers`` values is the
environment variable ``NAME`` (an unset one is an error), so secrets stay out of the file.
Every key is checked: a misspelt one is an error naming it, never a quietly default tool.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foreman.errors import ConfigError, ForemanError
from foreman.tools.base import Tool, ToolSource
from foreman.tools.builtin import BUILTIN_TOOLS, builtin_tool
from foreman.tools.function import FunctionTool
from foreman.tools.toolbox import Toolbox
from foreman.workers.spec import unknown_keys

TOOLS_KEYS = ("builtin", "mcp", "python")
PYTHON_TOOL_KEYS = ("function", "name", "description", "risk", "idempotent")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def team_toolbox(section: Any, path: Path) -> Toolbox:
    """The toolbox a team file's ``tools:`` section describes (``path``: the file)."""
    where = f"Team file {path}, tools"
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping with 'builtin', 'mcp' or 'python'.")
    if problems := unknown_keys(section, TOOLS_KEYS):
        raise ConfigError(f"{where}: {'; '.join(problems)}.")
    folder = path.parent
    tools: list[Tool] = []
    tools += _builtins(section.get("builtin") or {}, folder, f"{where}.builtin")
    tools += _python_tools(section.get("python") or [], folder, f"{where}.python")
    sources = _mcp_sources(section.get("mcp") or [], folder, f"{where}.mcp")
    names = [found.name for found in tools]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(f"{where}: two tools are named {twice[0]!r}.")
    try:
        return Toolbox(tools, sources)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _builtins(entries: Any, folder: Path, where: str) -> list[Tool]:
    if isinstance(entries, list):
        if not all(isinstance(name, str) for name in entries):
            raise ConfigError(f"{where}: a list of built-in tools holds only their names.")
        entries = dict.fromkeys(entries)
    if not isinstance(entries, dict):
        raise ConfigError(f"{where} must map built-in tool names to their settings.")
    tools = []
    for name, settings in entries.items():
        settings = dict(settings or {}) if isinstance(settings, dict | None) else settings
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}.{name} must be a mapping of settings.")
        fields = BUILTIN_TOOLS[name].model_fields if name in BUILTIN_TOOLS else {}
        if fields and (problems := unknown_keys(settings, fields)):
            raise ConfigError(f"{where}.{name}: {'; '.join(problems)}.")
        if "root" in fields:
            settings["root"] = str(folder / str(settings.get("root", ".")))
        try:
            tools.append(builtin_tool(str(name), settings))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tools


def _mcp_sources(entries: Any, folder: Path, where: str) -> list[ToolSource]:
    from foreman.tools.mcp import MCPServerSpec, MCPSource  # loads mcp only when used

    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of MCP servers.")
    sources: list[ToolSource] = []
    for index, entry in enumerate(entries, start=1):
        label = f"{where} #{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{label} must be a mapping with a 'name'.")
        settings = dict(entry)
        name = settings.pop("name")
        label += f" ({name!r})"
        if problems := unknown_keys(entry, MCPServerSpec.model_fields):
            raise ConfigError(f"{label}: {'; '.join(problems)}.")
        try:
            for key in ("env", "headers"):
                if isinstance(settings.get(key), dict):
                    settings[key] = {k: _expand(_text(v, key, k)) for k, v in settings[key].items()}
            if "command" in settings:
                if not isinstance(settings["command"], str) or not settings["command"].strip():
                    raise ConfigError("'command' must be the program to start, not empty.")
                settings["cwd"] = str(folder / str(settings.get("cwd", ".")))
            sources.append(MCPSource(name, **settings))
        except ConfigError as exc:
            why = str(exc).removeprefix(f"MCP server {name!r}: ")
            raise ConfigError(f"{label}: {why}") from None
    return sources


def _text(value: Any, key: str, name: Any) -> str:
    """An ``env`` or ``headers`` value as the text it is sent as: a string or a number;
    anything else (``true``, a list, nothing) would reach the server as Python's spelling
    of it (``True``, ``[1, 2]``, ``None``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    shown = "nothing" if value is None else type(value).__name__
    raise ConfigError(f"{key} {name!r} must be text (quote it in YAML), not {shown}.")


def _python_tools(entries: Any, folder: Path, where: str) -> list[Tool]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of 'module:function' entries.")
    tools = []
    for index, entry in enumerate(entries, start=1):
        label = f"{where} #{index}"
        options = {"function": entry} if isinstance(entry, str) else entry
        if not isinstance(options, dict) or not isinstance(options.get("function"), str):
            raise ConfigError(f"{label} must be 'module:function' or a mapping with 'function'.")
        if problems := unknown_keys(options, PYTHON_TOOL_KEYS):
            raise ConfigError(f"{label}: {'; '.join(problems)}.")
        _check_types(options, label)
        reference = options.pop("function")
        found = _import(reference, folder, label)
        if isinstance(found, Tool):
            if options:
                raise ConfigError(
                    f"{label}: {reference} is already a tool (@tool); set "
                    f"{', '.join(options)} in its decorator."
                )
            tools.append(found)
        elif callable(found):
            try:
                tools.append(FunctionTool(found, **options))
            except ForemanError as exc:
                raise ConfigError(f"{label}: {exc}") from None
            except TypeError as exc:
                raise ConfigError(f"{label}: {reference} cannot be a tool: {exc}") from None
        else:
            raise ConfigError(f"{label}: {reference} is not a function or a tool.")
    return tools


def _check_types(options: dict[str, Any], label: str) -> None:
    """A YAML value of the wrong kind is an error, never a quietly truthy setting (an
    ``idempotent: maybe`` would let resume repeat a call unasked)."""
    if not isinstance(options.get("idempotent", False), bool):
        raise ConfigError(f"{label}: 'idempotent' must be true or false.")
    for key in ("name", "description"):
        if key in options and not isinstance(options[key], str):
            raise ConfigError(f"{label}: '{key}' must be text.")


def _import(reference: str, folder: Path, label: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{label}: {reference!r} must be 'module:function'.")
    try:
        with _importable_from(folder):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{label}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself fails: a syntax error, an error it raises
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"{label}: cannot import {module_name!r}: {why}") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"{label}: module {module_name!r} has no {attribute!r}.")
        found = getattr(found, part)
    return found


@contextlib.contextmanager
def _importable_from(folder: Path) -> Iterator[None]:
    """Modules beside the team file import as if it were a script's folder."""
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _expand(value: str) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} is not set")
        return os.environ[name]

    return _VARIABLE.sub(variable, value)
