"""Patterns declared in team files, and run from the CLI with ``foreman run --pattern``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foreman.cli import app
from foreman.engine.prompts import REVIEW_SUFFIX
from foreman.errors import ConfigError, UnknownWorkerError
from foreman.events import EVENT_ADAPTER
from foreman.models.base import ModelRequest
from foreman.patterns import FanOut, GeneratorEvaluator, Pipeline, team_pattern
from foreman.workers import load_team

runner = CliRunner()

TEAM = """\
workers:
  - {name: extractor, description: Extracts facts., system_prompt: You extract facts.}
  - {name: writer, description: Writes., system_prompt: You write.}
  - {name: critic, description: Judges., system_prompt: You judge.}
patterns:
  - name: writeup
    kind: pipeline
    stages:
      - {name: facts, worker: extractor, instructions: List the facts.}
      - {name: draft, worker: writer, instructions: Write it up., judge: critic, max_rounds: 2}
  - {name: docs, kind: fanout, worker: extractor, aggregate: writer, max_group: 2, chunk_chars: 30}
  - {name: polish, kind: generator_evaluator, generator: writer, judge: critic, max_rounds: 4}
"""


def team_file(tmp_path: Path, text: str = TEAM) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(text)
    return path


def test_a_team_file_declares_patterns_on_its_workers(tmp_path) -> None:
    team = load_team(team_file(tmp_path))

    writeup = team_pattern(team, "writeup")
    assert isinstance(writeup, Pipeline)
    assert [(s.name, s.worker.name, s.judge) for s in writeup.stages] == [
        ("facts", "extractor", None),
        ("draft", "writer", team.get("critic")),
    ]
    docs = team_pattern(team, "docs")
    assert isinstance(docs, FanOut) and docs.max_group == 2
    assert docs.aggregate == team.get("writer")
    polish = team_pattern(team, "polish")
    assert isinstance(polish, GeneratorEvaluator) and polish.max_rounds == 4
    with pytest.raises(ConfigError, match="Known patterns: writeup, docs, polish"):
        team_pattern(team, "nope")


@pytest.mark.parametrize(
    ("patterns", "error"),
    [
        ("  - {name: p, kind: pipeline, stages: []}", "stages"),
        ("  - {name: p, kind: fanout, worker: extractor}", "aggregate"),
        ("  - {name: p, kind: loop, worker: extractor}", "kind"),
        (
            "  - {name: p, kind: fanout, worker: extractor, aggregate: writer, max_grup: 3}",
            "max_grup",
        ),
        (
            "  - {name: writer, kind: generator_evaluator, generator: extractor, judge: critic}",
            "own name",
        ),
        ("  - {name: p, kind: generator_evaluator, generator: extractor, judge: ghost}", "'ghost'"),
    ],
)
def test_a_bad_pattern_in_a_team_file_is_a_clear_error(tmp_path, patterns: str, error: str) -> None:
    text = TEAM.split("patterns:")[0] + "patterns:\n" + patterns + "\n"

    with pytest.raises((ConfigError, UnknownWorkerError), match=error):
        load_team(team_file(tmp_path, text))


def test_foreman_run_pattern_runs_the_teams_pipeline_without_planning(scripted, tmp_path) -> None:
    def answer(request: ModelRequest) -> str:
        if request.system.endswith(REVIEW_SUFFIX):
            return '{"approved": true, "reasons": []}'
        sent = json.loads(request.messages[0].content)
        if request.system == "You extract facts.":
            return f"facts of {sent['args']['input']}"
        return f"draft from {sent['inputs']['facts']}"

    model = scripted(answer)
    team = team_file(tmp_path)

    result = runner.invoke(
        app, ["run", "the notes", "--team", str(team), "--pattern", "writeup", "--json"]
    )

    assert result.exit_code == 0, result.output
    events = [EVENT_ADAPTER.validate_json(line) for line in result.output.splitlines()]
    final = events[-1].result
    assert final.answer == "draft from facts of the notes"
    assert [t.id for t in final.plan.tasks] == ["facts", "draft"]
    assert not any("tasks" in (r.output_schema or {}).get("properties", {}) for r in model.requests)
    assert sum(r.system.endswith(REVIEW_SUFFIX) for r in model.requests) == 1


def test_foreman_run_with_an_unknown_pattern_is_one_line_and_exit_1(scripted, tmp_path) -> None:
    scripted(["never asked"])

    result = runner.invoke(
        app, ["run", "x", "--team", str(team_file(tmp_path)), "--pattern", "nope"]
    )

    assert result.exit_code == 1
    assert "No pattern named 'nope'. Known patterns: writeup, docs, polish." in result.output
    assert "Traceback" not in result.output


def test_a_pattern_runs_as_its_plan_in_a_team_whose_mode_is_delegate(scripted, tmp_path) -> None:
    """The team file's `mode: delegate` is for runs it plans; a pattern brings its plan."""
    model = scripted(lambda request: "polished")
    team = team_file(tmp_path, "mode: delegate\n" + TEAM)

    result = runner.invoke(app, ["run", "x", "--team", str(team), "--pattern", "polish", "--json"])

    assert result.exit_code == 0, result.output
    final = EVENT_ADAPTER.validate_json(result.output.splitlines()[-1]).result
    assert final.status.value == "succeeded" and [t.id for t in final.plan.tasks] == ["generate"]
    assert not any(request.tools for request in model.requests)  # no delegating turn


def test_a_pattern_with_mode_delegate_is_a_usage_error(scripted, tmp_path) -> None:
    scripted(["never asked"])
    args = ["run", "x", "--team", str(team_file(tmp_path)), "--pattern", "polish"]

    result = runner.invoke(app, [*args, "--mode", "delegate"])

    assert result.exit_code == 2
    assert "--pattern runs the pattern's own plan; drop --mode delegate." in result.output
    assert "Traceback" not in result.output


def test_foreman_workers_lists_the_teams_patterns(tmp_path) -> None:
    result = runner.invoke(app, ["workers", "--team", str(team_file(tmp_path))])

    assert result.exit_code == 0, result.output
    assert "Patterns: writeup (pipeline), docs (fanout), polish (generator_evaluator)" in (
        " ".join(result.output.split())
    )
