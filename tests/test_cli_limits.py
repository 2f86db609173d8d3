"""Bounds on what a user can ask for: plan size, tree depth, and option values."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from foreman.cli import app
from foreman.cli.history import run_tree
from foreman.cli.render import MAX_TREE_DEPTH, plan_tree
from foreman.errors import ConfigError
from foreman.plan.schema import MAX_TASKS_LIMIT, Plan, check_max_tasks, constrained_plan_schema
from foreman.results import RunStatus, TaskResult, TaskStatus
from foreman.store.base import RunRecord
from foreman.store.sqlite import SQLiteStore
from helpers import plan_of, task

runner = CliRunner()


# --- --max-tasks ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["run", "x"], ["plan", "x"]])
@pytest.mark.parametrize("value", ["0", str(MAX_TASKS_LIMIT + 1), "10000"])
def test_max_tasks_out_of_range_is_a_usage_error(command: list[str], value: str) -> None:
    result = runner.invoke(app, [*command, "--max-tasks", value])
    assert result.exit_code == 2, result.output
    assert "Error: Invalid value for '--max-tasks': Input should be" in result.output


def test_the_api_checks_max_tasks_before_building_a_schema() -> None:
    assert check_max_tasks(MAX_TASKS_LIMIT) == MAX_TASKS_LIMIT
    for bad in (0, MAX_TASKS_LIMIT + 1, 10_000, True, 2.5):
        with pytest.raises(ConfigError, match="max_tasks must be"):
            check_max_tasks(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"between 1 and {MAX_TASKS_LIMIT}, not 10000"):
        constrained_plan_schema(["a"], 10_000)


# --- deep plans -------------------------------------------------------------------------------


def chain(length: int) -> Plan:
    tasks = [task("t1")] + [task(f"t{k}", "writer", f"t{k - 1}") for k in range(2, length + 1)]
    return plan_of(*tasks)


def rendered(renderable, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_chain_1000_deep_renders_every_task_within_a_bounded_depth() -> None:
    deep = chain(1000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # the walk must not lean on the recursion limit at all
    try:
        text = rendered(plan_tree(deep))
    finally:
        sys.setrecursionlimit(limit)
    for k in (1, 2, 500, 999, 1000):
        assert f"t{k} " in text
    assert text.count("do t") == 1000  # every task once
    assert "… continued from t" in text
    widest = max(len(line.rstrip()) for line in text.splitlines())
    assert widest <= 4 * (MAX_TREE_DEPTH + 1) + len("t1000 writer: do t1000")


@pytest.mark.parametrize("width", [50, 80, 120])
def test_a_deep_chain_nests_only_as_deep_as_the_terminal_allows(width: int) -> None:
    deep = chain(30)
    run = RunRecord(run_id="r", request="q", status=RunStatus.partial, plan=deep)
    results = {t.id: TaskResult(task_id=t.id, worker=t.worker, status=TaskStatus.succeeded,
                                output=f"output of {t.id}") for t in deep.tasks}  # fmt: skip
    for tree in (plan_tree(deep), run_tree(run, results)):
        text = rendered(tree, width)
        for k in range(1, 31):  # every task whole, on one line: none squeezed to nothing
            assert len(re.findall(rf"\bt{k} (researcher|writer)\b.*: do t{k}\b", text)) == 1, k
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width


def test_a_shared_dependency_is_shown_once_and_referenced_after() -> None:
    diamond = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t1"),
                      task("t4", "writer", "t2", "t3"))  # fmt: skip
    text = rendered(plan_tree(diamond))
    assert text.count("do t4") == 1 and "t4 (see above)" in text
    assert text.index("t2 writer") < text.index("t4 writer") < text.index("t3 writer")


def test_show_of_a_run_1000_tasks_deep(tmp_path) -> None:
    deep = chain(1000)

    async def record() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(
                RunRecord(run_id="deep", request="deep", status=RunStatus.partial)
            )
            await store.save_plan("deep", deep)
            await store.save_task(
                "deep", TaskResult(task_id="t1", worker="researcher", status=TaskStatus.succeeded)
            )
        finally:
            await store.aclose()

    asyncio.run(record())
    result = runner.invoke(app, ["show", "deep"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "t1000 writer not run" in result.output


def test_run_tree_marks_tasks_that_never_ran() -> None:
    run = RunRecord(run_id="r", request="q", status=RunStatus.partial, plan=chain(2))
    text = rendered(run_tree(run, {}))
    assert "t1 researcher not run" in text and "t2 writer not run" in text


# --- bad option values are usage errors (exit 2), reported before anything runs ---------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--assembly", "foo"], "'foo' is not one of 'synthesis', 'concat'"),
        (["--auto-approve", "foo"], "'foo' is not one of 'low', 'medium'"),
        (["--auto-approve", "high"], "'high' is not one of 'low', 'medium'"),
        (["--validator", "nobody"], "Invalid value for --validator: no worker named 'nobody'"),
        (["--concurrency", "0"], "Invalid value for '--concurrency'"),
    ],
)
def test_bad_option_values_exit_2_with_a_clear_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", "x", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not os.path.exists(os.environ["FOREMAN_DB"])  # no run was even recorded


def test_a_validator_from_the_team_file_is_accepted(tmp_path, monkeypatch) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "workers:\n  - name: judge\n    description: Judges.\n    system_prompt: Judge.\n"
    )
    monkeypatch.setattr(sys.modules["foreman.cli.app"], "build_orchestrator", _stop_here)
    result = runner.invoke(app, ["run", "x", "--team", str(team), "--validator", "judge"])
    assert result.exit_code == 99, result.output


def _stop_here(settings, db):
    raise SystemExit(99)
