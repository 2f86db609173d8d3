"""Tools from team files and from ``foreman run --allow-tool``: the ``tools:`` section
(built-in tools, MCP servers, Python functions), its one-line errors, and workers calling
those tools end to end through the CLI on the scripted model (the MCP server is the real
fixture server, started by foreman)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from foreman.cli import app
from foreman.cli.common import build_orchestrator
from foreman.errors import ConfigError
from foreman.models.base import ModelRequest, ToolCall
from foreman.tools import RiskLevel
from foreman.tools.mcp import MCPSource
from foreman.workers import Registry, load_team
from helpers import Script, plan_of, task

runner = CliRunner()
SERVER = Path(__file__).with_name("mcp_fixture_server.py")


def turns(*answers: Any):
    """A task's answer on each turn of its tool loop; a callable gets the request."""

    def answer(request: ModelRequest) -> Any:
        chosen = answers[sum(message.role == "assistant" for message in request.messages)]
        return chosen(request) if callable(chosen) else chosen

    return answer


def last_tool_result(request: ModelRequest) -> str:
    return "saw: " + request.messages[-1].tool_results[-1].content


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def write_team(folder: Path, text: str) -> Path:
    team = folder / "team.yaml"
    team.write_text(text)
    return team


TOOLS_MODULE = '''
from foreman.tools import tool


@tool(risk="high")
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"sent to {to}"


def shout(text: str) -> str:
    """Say it louder."""
    return text.upper()
'''


def test_a_team_file_declares_builtin_mcp_and_python_tools(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "team_tools_module.py").write_text(TOOLS_MODULE)
    monkeypatch.setenv("FIXTURE_FLAVOUR", "lime")
    team = write_team(
        tmp_path,
        f"""
tools:
  builtin:
    read_file: {{root: docs}}
    shell: {{timeout: 5}}
  mcp:
    - name: fixture
      command: {sys.executable}
      args: [{SERVER}]
      env: {{FIXTURE_FLAVOUR: "${{FIXTURE_FLAVOUR}}"}}
      risk: low
      tool_risk: {{refuse: high}}
      prefix: fx_
    - name: remote
      url: http://127.0.0.1:9/mcp
      headers: {{Authorization: "Bearer ${{FIXTURE_FLAVOUR}}"}}
  python:
    - team_tools_module:send_email
    - {{function: team_tools_module:shout, risk: medium, idempotent: true}}
workers:
  - name: clerk
    description: Files things.
    system_prompt: You file things.
    tools: [read_file, fx_*, shout]
""",
    )
    registry = load_team(team)
    box = registry.tools
    assert sorted(box.names()) == ["read_file", "send_email", "shell", "shout"]
    assert box.get("send_email").risk is RiskLevel.high
    assert (box.get("shout").risk, box.get("shout").idempotent) == (RiskLevel.medium, True)
    fixture, remote = box.sources
    assert isinstance(fixture, MCPSource) and isinstance(remote, MCPSource)
    assert fixture.spec.cwd == str(tmp_path / ".")  # a stdio server starts beside the file
    assert fixture.spec.env == {"FIXTURE_FLAVOUR": "lime"}
    assert remote.spec.headers == {"Authorization": "Bearer lime"}
    assert registry.get("clerk").tools == ("read_file", "fx_*", "shout")


def test_a_list_of_builtins_is_rooted_at_the_team_files_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("beside the team file")
    team = write_team(
        tmp_path,
        "include_defaults: true\ntools:\n  builtin: [read_file, list_files, fetch]\n",
    )
    registry = load_team(team)
    assert registry.get("researcher").tools == ("read_file", "list_files", "fetch")
    assert registry.get("coder").tools == ("read_file", "list_files")
    assert registry.get("writer").tools == ()
    listed = runner.invoke(app, ["workers", "--team", str(team)])
    assert "Tools: read_file (low risk); list_files (low risk); fetch (medium risk)" in (
        listed.output
    )


@pytest.mark.parametrize(
    ("section", "why"),
    [
        ("tools: [read_file]", "tools must be a mapping with 'builtin', 'mcp' or 'python'"),
        ("tools: {bulitin: {}}", "unknown key 'bulitin' (did you mean 'builtin'?)"),
        ("tools: {builtin: {rm: {}}}", "No built-in tool named 'rm'"),
        ("tools: {builtin: [{read_file: {}}]}", "a list of built-in tools holds only their names"),
        (
            "tools: {builtin: {shell: {timout: 3}}}",
            "tools.builtin.shell: unknown key 'timout' (did you mean 'timeout'?)",
        ),
        ("tools: {builtin: {read_file: {root: nowhere}}}", "is not an existing directory"),
        ("tools: {mcp: [{command: x}]}", "tools.mcp #1 must be a mapping with a 'name'"),
        ("tools: {mcp: [{name: s}]}", "tools.mcp #1 ('s'): give either 'command'"),
        (
            "tools: {mcp: [{name: s, comand: x}]}",
            "tools.mcp #1 ('s'): unknown key 'comand' (did you mean 'command'?)",
        ),
        (
            "tools: {mcp: [{name: s, url: 'http://h/mcp', headers: {A: '${NOPE_X_1}'}}]}",
            "environment variable NOPE_X_1 is not set",
        ),
        (  # YAML's true would reach the server as Python's "True"
            "tools: {mcp: [{name: s, command: x, env: {DEBUG: true}}]}",
            "env 'DEBUG' must be text (quote it in YAML), not bool",
        ),
        (
            "tools: {mcp: [{name: s, url: 'http://h/mcp', headers: {A: }}]}",
            "headers 'A' must be text (quote it in YAML), not nothing",
        ),
        ("tools: {mcp: [{name: s, command: ''}]}", "'command' must be the program to start"),
        ("tools: {python: [nomodule_x_1:f]}", "cannot import 'nomodule_x_1'"),
        ("tools: {python: ['json']}", "'json' must be 'module:function'"),
        ("tools: {python: ['json:nothing_here']}", "module 'json' has no 'nothing_here'"),
        ("tools: {python: ['json:__doc__']}", "json:__doc__ is not a function or a tool"),
        ("tools: {python: [{function: 'posixpath:basename', rsik: high}]}", "unknown key 'rsik'"),
        ("tools: {python: [{function: 'posixpath:basename', risk: extreme}]}", "risk must be"),
        ("tools: {python: ['json:dumps']}", "*args and **kwargs cannot be tools"),
        (
            "tools: {python: ['posixpath:basename', 'posixpath:basename']}",
            "two tools are named 'basename'",
        ),
    ],
)
def test_a_wrong_tools_section_is_one_clear_line(tmp_path: Path, section: str, why: str) -> None:
    team = write_team(
        tmp_path, section + "\nworkers: [{name: a, description: d, system_prompt: s}]\n"
    )
    with pytest.raises(ConfigError, match=r"Team file .*tools") as caught:
        load_team(team)
    assert why in str(caught.value) and "\n" not in str(caught.value)
    result = runner.invoke(app, ["workers", "--team", str(team)])
    assert result.exit_code == 1 and why in result.output
    assert "Traceback" not in result.output


def test_a_worker_calls_an_mcp_servers_tool_from_a_team_file(scripted, tmp_path: Path) -> None:
    team = write_team(
        tmp_path,
        f"""
tools:
  mcp:
    - name: fixture
      command: {sys.executable}
      args: [{SERVER}]
      risk: low
workers:
  - name: calc
    description: Adds numbers.
    system_prompt: You add numbers with the add tool.
    tools: [add]
""",
    )
    add = ToolCall(id="", name="add", arguments={"a": 19, "b": 23})
    scripted(Script(plan_of(task("t1", "calc")), tasks={"do t1": turns([add], last_tool_result)}))
    result = runner.invoke(
        app,
        ["run", "add them", "--team", str(team), "--assembly", "concat", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    seen = events(result.output)
    finished = [e for e in seen if e["type"] == "tool_finished"]
    assert [(e["tool"], e["outcome"], e["result"]) for e in finished] == [("add", "ok", "42")]
    answer = next(e for e in seen if e["type"] == "task_finished")
    assert answer["output"] == "saw: 42"


def test_allow_tool_enables_builtins_for_the_default_team_and_resume(
    scripted, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("llamas hum")
    (tmp_path.parent / "secret.txt").write_text("the password")
    reads = [
        ToolCall(id="", name="read_file", arguments={"path": "notes.txt"}),
        ToolCall(id="", name="read_file", arguments={"path": "../secret.txt"}),
    ]
    scripted(Script(plan_of(task("t1", "researcher")), tasks={"do t1": turns(reads, "done")}))
    result = runner.invoke(
        app,
        ["run", "read", "--allow-tool", "read_file", "--tool-root", str(tmp_path), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    finished = [e for e in events(result.output) if e["type"] == "tool_finished"]
    assert sorted((e["outcome"], e["result"]) for e in finished) == [  # ran concurrently
        (
            "error",
            "'../secret.txt' is outside the tool root (through '..' or a symlink); "
            "only files under the root can be used.",
        ),
        ("ok", "llamas hum"),
    ]
    record = _last_record()
    assert record["builtin_tools"] == ["read_file"]
    assert record["tool_root"] == str(tmp_path.resolve())
    rebuilt = build_orchestrator(record, None)  # what `foreman resume` does
    assert rebuilt.registry.tools.names() == ["read_file"]
    assert rebuilt.registry.get("researcher").tools == ("read_file",)
    assert rebuilt.config.builtin_tools == ("read_file",)


def test_allow_tool_serves_a_team_files_workers_that_name_it(scripted, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    team = write_team(
        tmp_path,
        "workers:\n  - {name: lister, description: Lists., system_prompt: You list.,"
        " tools: [list_files]}\n",
    )
    listing = ToolCall(id="", name="list_files", arguments={})
    scripted(Script(plan_of(task("t1", "lister")), tasks={"do t1": turns([listing], "done")}))
    flags = ["--team", str(team), "--allow-tool", "list_files", "--tool-root", str(tmp_path)]
    result = runner.invoke(app, ["run", "x", *flags, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (finished,) = [e for e in events(result.output) if e["type"] == "tool_finished"]
    assert finished["outcome"] == "ok" and "a.txt (5 bytes)" in finished["result"]


def test_an_allow_list_entry_that_matches_no_tool_is_a_warning_line(scripted, tmp_path) -> None:
    team = write_team(
        tmp_path,
        "workers:\n  - {name: lister, description: Lists., system_prompt: You list.,"
        " tools: [list_flies]}\n",
    )
    scripted(Script(plan_of(task("t1", "lister"))))
    result = runner.invoke(app, ["run", "x", "--team", str(team), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning: run " in result.stderr  # without -v: a misspelt tool is not silent
    assert "worker 'lister' allows the tool 'list_flies', which no tool matches" in result.stderr
    assert all(line.startswith("{") for line in result.stdout.splitlines())  # --json kept clean


def test_nothing_is_enabled_by_default(scripted) -> None:
    scripted(Script(plan_of(task("t1", "coder"))))
    result = runner.invoke(app, ["run", "x", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not any(e["type"].startswith("tool_") for e in events(result.output))
    assert _last_record()["builtin_tools"] == []
    assert Registry.default().get("coder").tools == ()


def test_a_high_risk_builtin_waits_for_a_person(scripted, tmp_path: Path) -> None:
    write = ToolCall(id="", name="write_file", arguments={"path": "x.txt", "content": "hi"})
    scripted(Script(plan_of(task("t1", "coder")), tasks={"do t1": turns([write], "done")}))
    result = runner.invoke(
        app,
        ["run", "x", "--allow-tool", "write_file", "--tool-root", str(tmp_path), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 5, result.output  # waits for approval: nothing written
    assert not (tmp_path / "x.txt").exists()
    requested = [e for e in events(result.output) if e["type"] == "approval_requested"]
    assert requested and "write_file" in json.dumps(requested[0])


def test_an_approved_write_runs_on_resume_with_the_runs_own_tools(
    scripted, tmp_path: Path, monkeypatch
) -> None:
    """resume rebuilds the toolbox from the run's settings (not from its own flags, it has
    none): the approved write lands under the root the run was given, wherever resume runs."""
    root = tmp_path / "work"
    root.mkdir()
    write = ToolCall(id="", name="write_file", arguments={"path": "x.txt", "content": "hi"})
    scripted(
        Script(plan_of(task("t1", "coder")), tasks={"do t1": turns([write], last_tool_result)})
    )
    flags = ["--allow-tool", "write_file", "--tool-root", str(root), "--json"]
    paused = runner.invoke(app, ["run", "x", *flags], catch_exceptions=False)
    assert paused.exit_code == 5, paused.output
    key = next(e for e in events(paused.output) if e["type"] == "approval_requested")["task_id"]
    assert key == "t1#1"
    assert runner.invoke(app, ["approve", "last", key]).exit_code == 0
    monkeypatch.chdir(tmp_path)  # elsewhere: the recorded root is absolute
    resumed = runner.invoke(app, ["resume", "last", "--json"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert (root / "x.txt").read_text() == "hi"
    assert not (tmp_path / "x.txt").exists()
    output = next(e for e in events(resumed.output) if e["type"] == "task_finished")["output"]
    assert output == "saw: wrote 2 bytes to x.txt"


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--allow-tool", "rm"], "no built-in tool named 'rm'"),
        (["--tool-root", "."], "--tool-root needs a tool to confine"),
        (["--allow-tool", "read_file", "--tool-root", "/nonexistent-x"], "is not a directory"),
    ],
)
def test_bad_tool_flags_are_usage_errors(flags: list[str], why: str) -> None:
    result = runner.invoke(app, ["run", "x", *flags])
    assert result.exit_code == 2
    assert why in result.output


def _last_record() -> dict:
    import asyncio
    import os

    from foreman.store.sqlite import SQLiteStore

    async def read() -> dict:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return (await store.get_run((await store.list_runs(1))[0].run_id)).settings
        finally:
            await store.aclose()

    return asyncio.run(read())
