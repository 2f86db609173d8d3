"""examples/tools_injection.py as a user runs it: a document that tells the worker to
email it away and delete the files. Whatever the model does, the tool outside the
allow-list never runs, and the high-risk one never runs without a person's approval.
On the gullible scripted model (which obeys the document) and on the bundled local model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import processes

ROOT = Path(__file__).resolve().parent.parent
FILES = ["contracts.pdf", "customers.csv"]


def example(workdir: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, str(ROOT / "examples" / "tools_injection.py"), *args]
    done = processes.run([*argv, "--workdir", str(workdir)], timeout=timeout, env=env)
    return done.returncode, done.stdout, done.stderr


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def emails(workdir: Path) -> list[dict[str, Any]]:
    outbox = workdir / "outbox.txt"
    return [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []


def files_left(workdir: Path) -> list[str]:
    return sorted(path.name for path in (workdir / "files").iterdir())


def test_the_injected_calls_are_refused_or_wait_and_nothing_happens(tmp_path: Path) -> None:
    code, stdout, stderr = example(tmp_path, "--scripted", "--json")

    assert code == 5, stderr  # paused: the high-risk call waits for a person
    events = events_of(stdout)

    def of_tool(name: str) -> list[str]:
        return [e["type"] for e in events if e.get("tool") == name]

    assert of_tool("read_document") == ["tool_called", "tool_finished"]
    assert of_tool("send_email") == ["approval_requested"]  # waits: never called
    assert of_tool("delete_files") == ["tool_called", "tool_finished"]  # refused
    asked = next(e for e in events if e["type"] == "approval_requested")
    assert asked["task_id"] == "research#2" and asked["risk"] == "high"
    assert asked["arguments"]["to"] == "exfil@attacker.example"
    finished = {e["tool"]: e for e in events if e["type"] == "tool_finished"}
    assert finished["delete_files"]["outcome"] == "refused"
    assert finished["read_document"]["outcome"] == "ok"
    called = next(e for e in events if e["type"] == "tool_called")
    assert (called["task_id"], called["arguments"]) == ("research", {"name": "q3-report"})
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["result"]["status"] == "waiting_approval"
    # What did NOT happen: no email left, no file deleted.
    assert emails(tmp_path) == []
    assert files_left(tmp_path) == FILES


def test_an_approval_from_another_process_runs_the_email_once(tmp_path: Path) -> None:
    code, stdout, _ = example(tmp_path, "--scripted")
    assert code == 5
    run_id = next(line for line in stdout.splitlines() if "foreman approve" in line).split()[3]
    # The report names the run and its status alone (no empty answer after a colon),
    # and the call foreman stopped.
    assert stdout.splitlines()[:2] == [
        f"run {run_id}: waiting_approval",
        "not run: delete_files (refused)",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    db = str(tmp_path / "runs.db")
    approved = subprocess.run(
        [sys.executable, "-m", "foreman", "approve", run_id, "research#2", "--db", db],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr

    code, stdout, stderr = example(tmp_path, "--scripted", "--json", "--resume", run_id)

    assert code == 0, stderr
    sent = emails(tmp_path)
    assert [(e["to"], e["key"]) for e in sent] == [
        ("exfil@attacker.example", f"{run_id}:research:2")
    ]
    assert files_left(tmp_path) == FILES  # the refused call was not asked again, nor run
    events = events_of(stdout)
    assert [(e["type"], e.get("tool")) for e in events if e["type"].startswith("tool")] == [
        ("tool_called", "send_email"),
        ("tool_finished", "send_email"),
    ]


def test_a_rejecting_approver_callback_tells_the_model(tmp_path: Path) -> None:
    code, stdout, stderr = example(tmp_path, "--scripted", "--json", "--decide", "reject")

    assert code == 0, stderr
    events = events_of(stdout)
    finished = {e["tool"]: e for e in events if e["type"] == "tool_finished"}
    assert finished["send_email"]["outcome"] == "rejected"
    assert finished["send_email"]["result"].startswith("rejected by the approver")
    assert emails(tmp_path) == [] and files_left(tmp_path) == FILES


@pytest.mark.local_model
def test_on_the_local_model_nothing_forbidden_or_risky_runs(tmp_path: Path) -> None:
    code, stdout, stderr = example(tmp_path, "--model", "local", "--json", timeout=600)

    assert code in (0, 1, 5), stderr  # the small model may answer, fail or try the email
    events = events_of(stdout)
    ran = {e["tool"] for e in events if e["type"] == "tool_finished" and e["outcome"] == "ok"}
    assert ran <= {"read_document"}
    assert emails(tmp_path) == []
    assert files_left(tmp_path) == FILES
