"""The pattern examples, run as a user runs them: ``--scripted``, in their own process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import processes

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = processes.run(
        [sys.executable, str(ROOT / "examples" / name), *args], timeout=60, env=env
    )
    return done.returncode, done.stdout, done.stderr


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_documents_fanout_reads_twenty_documents_in_parallel_and_loses_none() -> None:
    code, stdout, stderr = run_example("documents_fanout.py", "--scripted", "--json")

    assert code == 0, stderr
    events = events_of(stdout)
    started = [e["task_id"] for e in events if e["type"] == "task_started"]
    assert sorted(t for t in started if t.startswith("part-")) == [
        f"part-{i:02d}" for i in range(1, 21)
    ]
    # concurrent: several documents started before the first one finished
    first_done = next(i for i, e in enumerate(events) if e["type"] == "task_finished")
    assert sum(1 for e in events[:first_done] if e["type"] == "task_started") >= 2
    result = events[-1]["result"]
    assert events[-1]["type"] == "run_finished" and result["status"] == "succeeded"
    plan = result["plan"]
    merges = [t for t in plan["tasks"] if t["id"].startswith("merge-")]
    assert len(merges) == 4 and all(len(t["depends_on"]) == 5 for t in merges)
    report = result["tasks"]["aggregate"]["output"]
    assert len(report["suppliers"]) == 20  # every document reached the final aggregate
    assert len({s["supplier"] for s in report["suppliers"]}) == 20
    assert report["total_exposure_usd"] == 671200
    assert sorted(report["high_risk"]) == [
        "Acme Metals",
        "Fulcrum Castings",
        "Helix Chemicals",
        "Nimbus Cloud Hosting",
        "Quartz Semiconductors",
    ]
    assert json.loads(result["answer"]) == report
    assert result["calls"] == 25  # 20 reads, 4 merges, 1 aggregate: no synthesis call


def test_documents_fanout_prints_the_report_and_its_figures() -> None:
    code, stdout, stderr = run_example("documents_fanout.py", "--scripted", "--max-group", "8")

    assert code == 0, stderr
    report, _, figures = stdout.rpartition("\n\n")
    assert len(json.loads(report)["suppliers"]) == 20
    assert figures.startswith("succeeded: 20 documents, 24 tasks (3 merges), 24 calls")


def test_pipeline_passes_the_input_along_and_revises_the_judged_stage() -> None:
    code, stdout, stderr = run_example("pipeline.py", "--scripted", "--json")

    assert code == 0, stderr
    events = events_of(stdout)
    validated = [(e["task_id"], e["approved"]) for e in events if e["type"] == "task_validated"]
    assert validated == [("draft", False), ("draft", True)]
    result = events[-1]["result"]
    assert result["status"] == "succeeded"
    assert [t["id"] for t in result["plan"]["tasks"]] == ["facts", "draft", "edit"]
    assert result["tasks"]["draft"]["revisions"] == 1
    answer = result["answer"]
    assert answer == result["tasks"]["edit"]["output"]  # the last stage, no synthesis
    assert "Action items" in answer  # only there after the critic's feedback
    assert "Impact: about 2,300 customers" in answer  # only in the original input
    assert "- 14:21 Deploy 4812 rolled back" in answer  # from the facts stage
    assert not any(e["type"] == "assembled" and e["method"] == "synthesis" for e in events)


def test_an_example_needs_one_model_choice() -> None:
    code, _, stderr = run_example("pipeline.py")

    assert code == 2
    assert "give exactly one of --model M or --scripted" in stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_reports_an_unknown_model_in_one_line(name: str) -> None:
    """billing_refactor.py and competitive_analysis.py let the ConfigError's traceback out."""
    code, _, stderr = run_example(name, "--model", "bogus:x")

    assert code == 1, stderr
    assert stderr.strip() == (
        "error: Unknown model 'bogus:x'. Use 'anthropic:<model>', 'openai:<model>', "
        "'local' or 'local:<path.gguf>'."
    )
