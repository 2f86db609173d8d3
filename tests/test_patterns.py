"""Patterns that compose: pipeline, fan-out, generator-evaluator, each run as a plan."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from foreman import Orchestrator, RunStatus
from foreman.engine.prompts import REVIEW_SUFFIX
from foreman.errors import ConfigError, ModelError, PlanError
from foreman.events import TaskValidated
from foreman.ledger.records import CallPurpose
from foreman.models.base import ModelRequest
from foreman.patterns import FanOut, GeneratorEvaluator, Pipeline, Stage, split_text
from foreman.plan.schema import Plan
from foreman.store import MemoryStore, SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import is_synthesis, of_type, payload, plan_of, task, worker

# --- pipeline ------------------------------------------------------------------------------

EXTRACT, WRITE, EDIT = worker("extract"), worker("write"), worker("edit")
PIPELINE = Pipeline(
    [
        Stage(name="facts", worker=EXTRACT, instructions="List the facts."),
        Stage(name="draft", worker=WRITE, instructions="Write it up."),
        Stage(name="final", worker=EDIT, instructions="Edit it."),
    ]
)


def by_worker(answers: dict[str, Any]) -> ScriptedModel:
    """Answers per worker (by system prompt): a string, a callable of the payload, or a
    list of them in turn."""
    turns: dict[str, int] = {}

    def answer(request: ModelRequest) -> Any:
        name = (request.system or "").removeprefix("You are the ").split(" worker.")[0]
        entry = answers[name]
        if isinstance(entry, list):
            turns[name] = turns.get(name, 0) + 1
            entry = entry[min(turns[name], len(entry)) - 1]
        return entry(payload(request)) if callable(entry) else entry

    return ScriptedModel(answer)


def test_a_pipeline_is_a_chain_with_the_input_alongside_and_the_last_stage_as_answer() -> None:
    plan = PIPELINE.plan_for("the notes")

    assert [(t.id, t.worker, t.depends_on) for t in plan.tasks] == [
        ("facts", "extract", []),
        ("draft", "write", ["facts"]),
        ("final", "edit", ["draft"]),
    ]
    assert all(t.args == {"input": "the notes"} for t in plan.tasks)
    assert plan.answer_task == "final"


async def test_each_stage_sees_the_original_input_and_the_previous_output() -> None:
    model = by_worker(
        {
            "extract": lambda p: f"facts({p['args']['input']})",
            "write": lambda p: f"draft({p['inputs']['facts']})",
            "edit": lambda p: f"final({p['inputs']['draft']}+{p['args']['input']})",
        }
    )

    store = MemoryStore()

    result = await PIPELINE.run("notes", model=model, store=store)

    assert result.status is RunStatus.succeeded
    assert result.answer == "final(draft(facts(notes))+notes)"
    assert PIPELINE.output(result) == result.answer
    assert not any(is_synthesis(r) for r in model.requests)
    calls = await store.list_calls(run_id=result.run_id)
    assert [(c.purpose, c.task_id) for c in calls] == [
        (CallPurpose.task, "facts"),
        (CallPurpose.task, "draft"),
        (CallPurpose.task, "final"),
    ]


async def test_a_failed_stage_reaches_the_next_as_missing_and_the_answer_says_so() -> None:
    model = by_worker(
        {
            "extract": ModelError("400 bad request"),
            "write": lambda p: json.dumps(p["inputs"]["facts"]),
            "edit": lambda p: f"edited {p['inputs']['draft']}",
        }
    )

    result = await PIPELINE.run("notes", model=model)

    assert result.status is RunStatus.partial
    assert result.answer.startswith('edited {"missing": true')
    assert "Partial result" in result.answer
    assert "facts (extract) failed" in result.answer


def test_pipeline_stages_need_distinct_valid_names() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        Pipeline([Stage(name="a", worker=EXTRACT, instructions="x")] * 2)
    with pytest.raises(ConfigError, match="start with a letter"):
        Pipeline([Stage(name="1st", worker=EXTRACT, instructions="x")])
    with pytest.raises(ConfigError, match="at least one stage"):
        Pipeline([])


# --- fan-out -------------------------------------------------------------------------------


class Facts(BaseModel):
    facts: list[str]


READER = worker("reader")
MERGER = worker("merger", output_schema=Facts)


def reader_and_merger() -> ScriptedModel:
    """The reader reports its chunk's fact; the merger unions every fact of its inputs."""

    def merge(p: dict[str, Any]) -> str:
        facts: list[str] = []
        for value in p["inputs"].values():
            if isinstance(value, dict) and "facts" in value:
                facts += value["facts"]
            else:  # a chunk's text, or the marker of a missing one
                facts.append(value if isinstance(value, str) else json.dumps(value))
        return Facts(facts=facts).model_dump_json()

    return by_worker({"reader": lambda p: f"fact:{p['args']['chunk']}", "merger": merge})


def reaches_root_once(plan: Plan) -> dict[str, int]:
    """How many paths lead from each chunk task to the answer task."""
    dependants = plan.dependants()
    paths: dict[str, int] = {}
    for t in reversed(plan.topological_order()):
        paths[t.id] = 1 if t.id == plan.answer_task else sum(paths[d] for d in dependants[t.id])
    return {t.id: paths[t.id] for t in plan.tasks if t.id.startswith("part-")}


@pytest.mark.parametrize(("chunks", "group"), [(1, 2), (2, 2), (8, 8), (9, 8), (20, 5), (1000, 8)])
def test_the_aggregation_tree_reads_every_chunk_once_and_no_group_is_too_big(
    chunks: int, group: int
) -> None:
    plan = FanOut(READER, MERGER, max_group=group).plan_for("q", [str(i) for i in range(chunks)])

    parts = [t for t in plan.tasks if t.id.startswith("part-")]
    assert len(parts) == chunks
    assert all(not t.depends_on for t in parts)
    assert set(reaches_root_once(plan).values()) == {1}  # one path each: nothing dropped
    aggregations = [t for t in plan.tasks if t.worker == "merger"]
    assert all(1 <= len(t.depends_on) <= group for t in aggregations)
    assert plan.answer_task == "aggregate" == plan.tasks[-1].id
    assert [t.args["chunk"] for t in parts] == [str(i) for i in range(chunks)]


def test_twenty_chunks_in_groups_of_five_make_four_merges_and_one_aggregate() -> None:
    plan = FanOut(READER, MERGER, max_group=5).plan_for("q", list("abcdefghijklmnopqrst"))

    merges = [t for t in plan.tasks if t.id.startswith("merge-")]
    assert [len(m.depends_on) for m in merges] == [5, 5, 5, 5]
    assert plan.task("aggregate").depends_on == [m.id for m in merges]
    assert plan.task("part-01").args == {"chunk": "a", "part": 1, "parts": 20, "request": "q"}


async def test_every_chunk_result_reaches_the_final_aggregate() -> None:
    fanout = FanOut(READER, MERGER, max_group=3)
    chunks = [f"doc{i:02d}" for i in range(20)]

    result = await fanout.run("collect the facts", chunks=chunks, model=reader_and_merger())

    assert result.status is RunStatus.succeeded
    final = fanout.output(result)
    assert isinstance(final, Facts)
    assert sorted(final.facts) == [f"fact:{chunk}" for chunk in chunks]
    assert json.loads(result.answer) == final.model_dump()
    assert result.calls == len(result.plan.tasks)  # no synthesis call on top


async def test_a_failed_chunk_is_reported_missing_not_dropped_silently() -> None:
    model = reader_and_merger()
    inner = model._function

    def failing(request: ModelRequest) -> Any:
        if payload(request).get("args", {}).get("chunk") == "doc3":
            return ModelError("400 unreadable")
        return inner(request)

    model._function = failing
    fanout = FanOut(READER, MERGER, max_group=4)

    result = await fanout.run("q", chunks=[f"doc{i}" for i in range(6)], model=model)

    assert result.status is RunStatus.partial
    assert "part-4 (reader) failed" in result.answer
    facts = fanout.output(result).facts
    assert len(facts) == 6 and "fact:doc3" not in facts  # the marker stands in for it
    assert any("missing" in fact for fact in facts)


def test_without_chunks_the_request_is_split() -> None:
    text = "\n\n".join(f"paragraph {i} " + "word " * 30 for i in range(10))
    plan = FanOut(READER, MERGER, chunk_chars=400).plan_for(text)

    parts = [t for t in plan.tasks if t.id.startswith("part-")]
    chunks = [t.args["chunk"] for t in parts]
    assert len(chunks) > 1
    assert all(len(chunk) <= 400 for chunk in chunks)
    assert all("request" not in t.args for t in parts)  # the request is the material
    assert " ".join(chunks).split() == text.split()


def test_split_text_cuts_long_paragraphs_between_words_and_keeps_everything() -> None:
    text = "short one\n\n" + " ".join(f"w{i}" for i in range(300)) + "\n\nlast"

    pieces = split_text(text, 100)

    assert all(len(piece) <= 100 for piece in pieces)
    assert " ".join(pieces).split() == text.split()
    assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]


def test_max_input_tokens_bounds_the_group_by_the_workers_max_tokens() -> None:
    big = worker("merger", output_schema=Facts, max_tokens=1000)

    assert FanOut(READER, big, max_group=8, max_input_tokens=3500).max_group == 3
    with pytest.raises(ConfigError, match="cannot hold two results"):
        FanOut(READER, big, max_input_tokens=1500)
    with pytest.raises(ConfigError, match="at least 2"):
        FanOut(READER, big, max_group=1)
    with pytest.raises(ConfigError, match="Nothing to fan out"):
        FanOut(READER, big).plan_for("q", [])


# --- generator-evaluator -------------------------------------------------------------------

GENERATOR, JUDGE = worker("generator"), worker("judge")


def generator_and_judge(verdicts: list[bool]) -> ScriptedModel:
    rounds = {"n": 0}

    def answer(request: ModelRequest) -> str:
        if (request.system or "").endswith(REVIEW_SUFFIX):
            approved = verdicts[min(rounds["n"], len(verdicts)) - 1]
            return json.dumps({"approved": approved, "reasons": [f"fix round {rounds['n']}"]})
        rounds["n"] += 1
        return f"version {rounds['n']}"

    return ScriptedModel(answer)


async def test_the_judges_feedback_reaches_the_next_round_until_it_approves() -> None:
    pattern = GeneratorEvaluator(GENERATOR, JUDGE, max_rounds=4)
    model = generator_and_judge([False, False, True])
    events: list = []
    store = SQLiteStore(None)

    result = await pattern.run("write a haiku", model=model, on_event=events.append, store=store)

    assert result.answer == "version 3"
    assert GeneratorEvaluator.accepted(result) is True
    generated = [payload(r) for r in model.requests if not r.system.endswith(REVIEW_SUFFIX)]
    assert generated[0] == {"instructions": "write a haiku", "inputs": {}}
    assert [g.get("previous_output") for g in generated] == [None, "version 1", "version 2"]
    assert [g.get("reviewer_feedback") for g in generated] == [
        None,
        ["fix round 1"],
        ["fix round 2"],
    ]
    verdicts = [(e.approved, e.revision) for e in of_type(events, TaskValidated)]
    assert verdicts == [(False, 0), (False, 1), (True, 2)]
    calls = await store.list_calls(run_id=result.run_id)
    reviews = [c for c in calls if c.purpose is CallPurpose.review]
    assert [(c.worker, c.task_id) for c in reviews] == [("judge", "generate")] * 3
    assert result.confidence == {"generate": 1.0}


async def test_rounds_running_out_keep_the_last_output_marked_rejected() -> None:
    pattern = GeneratorEvaluator(GENERATOR, JUDGE, max_rounds=2)

    result = await pattern.run("x", model=generator_and_judge([False]))

    assert result.answer == "version 2"
    assert GeneratorEvaluator.accepted(result) is False
    assert result.tasks["generate"].revisions == 1
    assert result.confidence == {"generate": 0.6}


async def test_a_tasks_judge_overrides_the_runs_validator() -> None:
    team = Registry([GENERATOR, JUDGE, worker("reviewer")])
    model = generator_and_judge([True])
    plan = plan_of(task("t1", "generator", judge="judge", max_rounds=1))

    await Orchestrator(team, model=model, validator="reviewer").run("x", plan=plan)

    [review] = [r for r in model.requests if r.system.endswith(REVIEW_SUFFIX)]
    assert review.system.startswith("You are the judge worker.")


def test_a_generator_cannot_judge_itself() -> None:
    with pytest.raises(ConfigError, match="another worker"):
        GeneratorEvaluator(GENERATOR, GENERATOR)


# --- the engine underneath -----------------------------------------------------------------


async def test_plans_naming_an_unknown_judge_or_answer_task_are_refused() -> None:
    orchestrator = Orchestrator(Registry([GENERATOR]), model=ScriptedModel([]))
    bad = Plan(tasks=[task("t1", "generator", judge="nobody")], answer_task="t9")

    with pytest.raises(PlanError) as caught:
        await orchestrator.run("x", plan=bad)

    assert any("unknown worker 'nobody'" in e for e in caught.value.errors)
    assert any("answer task 't9'" in e for e in caught.value.errors)


async def test_a_pattern_run_is_durable_and_resumes_without_repeating_stages(tmp_path) -> None:
    flaky = worker("write", on_failure="abort")
    pipeline = Pipeline(
        [
            Stage(name="facts", worker=EXTRACT, instructions="List the facts."),
            Stage(name="draft", worker=flaky, instructions="Write it up."),
        ]
    )
    store = SQLiteStore(tmp_path / "runs.db")
    first = by_worker({"extract": "F", "write": ModelError("400 down")})

    aborted = await pipeline.run("notes", model=first, store=store)

    assert aborted.status is RunStatus.aborted
    second = by_worker({"extract": "F again", "write": lambda p: f"D({p['inputs']['facts']})"})
    resumed = await pipeline.orchestrator(model=second, store=store).resume(aborted.run_id)
    assert resumed.status is RunStatus.succeeded
    assert resumed.answer == "D(F)"
    assert [r.system for r in second.requests] == [flaky.system_prompt]


async def test_a_given_orchestrator_must_know_the_patterns_workers() -> None:
    lacking = Orchestrator(Registry([EXTRACT]), model=ScriptedModel([]))
    with pytest.raises(ConfigError, match="lacks pattern 'pipeline'"):
        await PIPELINE.run("x", orchestrator=lacking)
    with pytest.raises(ConfigError, match="either an orchestrator or its settings"):
        await PIPELINE.run("x", orchestrator=lacking, model="local")
    clash = Registry([worker("write", description="another writer")])
    with pytest.raises(ConfigError, match="different worker named 'write'"):
        PIPELINE.orchestrator(clash)


async def test_a_pattern_streams_its_run_and_closes_the_models_it_built() -> None:
    class Closing(ScriptedModel):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    model = Closing(lambda request: '{"approved": true, "reasons": []}')
    pattern = GeneratorEvaluator(GENERATOR, JUDGE)

    events = [event async for event in pattern.stream("x", model=model)]

    assert [events[0].type, events[-1].type] == ["run_started", "run_finished"]
    assert events[-1].result.answer == '{"approved": true, "reasons": []}'
    assert model.closed
