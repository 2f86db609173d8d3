"""Replanning from the CLI: --replan, --max-replans, team files, `show` with plan versions."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from foreman.errors import ConfigError
from foreman.workers.registry import load_team
from processes import run

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def t(tid: str, *deps: str, worker: str = "researcher", text: str | None = None) -> dict:
    return {
        "id": tid,
        "worker": worker,
        "instructions": text or f"do {tid}",
        "depends_on": list(deps),
    }


def foreman(tmp_path: Path, spec: dict, *args: str):
    spec = {"log": str(tmp_path / "calls.log"), **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{TESTS}", "COLUMNS": "200"}
    argv = [sys.executable, str(TESTS / "scripted_cli.py"), str(tmp_path / "spec.json"), *args]
    return run(
        [*argv, "--db", str(tmp_path / "runs.db")] if args[0] in ("run", "show") else argv,
        env=env,
        timeout=120,
    )


def test_run_replans_and_show_lists_the_plan_versions(tmp_path: Path) -> None:
    spec = {
        "plan": {"tasks": [t("t1")]},
        "revisions": [{"reason": "t1 found a second part", "add": [t("t2", "t1")]}],
    }
    done = foreman(
        tmp_path, spec, "run", "req", "--replan", "always", "--max-replans", "2", "--json"
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    revised = [e for e in events if e["type"] == "plan_revised"]
    assert [(e["version"], e["added"], e["reason"]) for e in revised] == [
        (2, ["t2"], "t1 found a second part")
    ]
    run_id = events[0]["run_id"]

    shown = foreman(tmp_path, spec, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "Plan versions" in shown.stdout and "t1 found a second part" in shown.stdout
    assert "first plan" in shown.stdout

    as_json = json.loads(foreman(tmp_path, spec, "show", run_id, "--json").stdout)
    assert [v["version"] for v in as_json["plan_versions"]] == [1, 2]
    assert as_json["plan_versions"][1]["changes"] == {"added": ["t2"], "changed": [], "dropped": []}
    assert (as_json["settings"]["replan"], as_json["settings"]["max_replans"]) == ("always", 2)


def test_a_stalled_run_exits_7_and_says_why(tmp_path: Path) -> None:
    spec = {
        "plan": {"tasks": [t("t1"), t("t2", "t1")]},
        "revisions": [{"reason": "again", "add": [t("t9", text="do t1")]}],
    }
    done = foreman(tmp_path, spec, "run", "req", "--replan", "always")
    assert done.returncode == 7, done.stderr
    assert "replanning stalled" in done.stderr and "repeats task 't1'" in done.stderr
    assert done.stderr.count("replanning stalled") == 1, done.stderr  # said once, not nested
    assert "foreman resume" in done.stderr

    spec["revisions"] = []  # resumed, the run goes on with the rest of its latest plan
    resumed = foreman(tmp_path, spec, "resume", "last", "--db", str(tmp_path / "runs.db"))
    assert resumed.returncode == 0, resumed.stderr
    log = (tmp_path / "calls.log").read_text().splitlines()
    assert log == ["do t1", "do t2"]  # t1 once, t2 after the resume


def test_the_team_file_sets_the_policy_unless_a_flag_does(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "include_defaults: true\nreplan: {policy: always, max_replans: 1}\nworkers: []\n"
    )
    spec = {
        "plan": {"tasks": [t("t1")]},
        "revisions": [{"add": [t("t2", "t1")]}, {"add": [t("t3", "t2")]}],
    }
    done = foreman(tmp_path, spec, "run", "req", "--team", str(team), "--json")
    types = [json.loads(line)["type"] for line in done.stdout.splitlines()]
    assert types.count("plan_revised") == 1  # the team's bound: one revision
    done = foreman(tmp_path, spec, "run", "req", "--team", str(team), "--replan", "never", "--json")
    assert "plan_revised" not in done.stdout


def test_a_team_file_with_a_bad_replan_section_is_a_clear_error(tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("include_defaults: true\nreplan: {policy: sometimes}\nworkers: []\n")
    with pytest.raises(ConfigError, match="replan"):
        load_team(team)


def test_help_lists_the_replan_options(tmp_path: Path) -> None:
    done = foreman(tmp_path, {"plan": {"tasks": [t("t1")]}}, "run", "--help")
    assert "--replan" in done.stdout and "--max-replans" in done.stdout
