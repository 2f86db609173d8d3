"""The quality gate: a validator worker reviews each output and sends it back, bounded."""

from __future__ import annotations

import json

import pytest

from foreman import Orchestrator, RunResult
from foreman.engine.prompts import REVIEW_SUFFIX, Verdict
from foreman.errors import ModelError, UnknownWorkerError
from foreman.events import TaskFinished, TaskValidated
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import (
    Script,
    is_review,
    of_type,
    payload,
    plan_of,
    task,
    worker,
    worker_requests,
)

TEAM = Registry([worker("researcher"), worker("writer"), worker("reviewer")])
APPROVE = '{"approved": true, "reasons": []}'


def reject(*reasons: str) -> str:
    return json.dumps({"approved": False, "reasons": list(reasons)})


async def run(plan, script: Script, **kwargs) -> tuple[RunResult, list, ScriptedModel]:
    model = ScriptedModel(script)
    events: list = []
    orchestrator = Orchestrator(TEAM, model=model, validator="reviewer", **kwargs)
    result = await orchestrator.run("x", plan=plan, on_event=events.append)
    return result, events, model


def reviews(model: ScriptedModel) -> list:
    return [r for r in model.requests if is_review(r)]


async def test_approval_keeps_the_output_with_full_confidence() -> None:
    result, events, model = await run(plan_of(task("t1")), Script(review=APPROVE))

    t1 = result.tasks["t1"]
    assert t1.approved is True
    assert t1.revisions == 0
    assert result.confidence == {"t1": 1.0}
    [validated] = of_type(events, TaskValidated)
    assert (validated.task_id, validated.approved, validated.revision) == ("t1", True, 0)
    [review] = reviews(model)
    assert review.system == TEAM.get("reviewer").system_prompt + REVIEW_SUFFIX
    assert review.output_schema == Verdict.model_json_schema()
    assert payload(review) == {"instructions": "do t1", "output": "out:do t1"}


async def test_the_review_happens_before_the_task_finishes() -> None:
    _, events, _ = await run(plan_of(task("t1")), Script(review=APPROVE))

    kinds = [e.type for e in events]
    assert kinds.index("task_validated") < kinds.index("task_finished")


async def test_one_rejection_then_approval_revises_once() -> None:
    script = Script(
        tasks={"do t1": ["first draft", "second draft"]},
        review=[reject("too vague", "no example"), APPROVE],
    )

    result, events, model = await run(plan_of(task("t1")), script)

    t1 = result.tasks["t1"]
    assert t1.output == "second draft"
    assert t1.revisions == 1
    assert t1.approved is True
    assert t1.attempts == 2
    assert result.confidence["t1"] == 1.0
    first, revision = worker_requests(model, "do t1")
    assert "previous_output" not in payload(first)
    revised = payload(revision)
    assert revised["previous_output"] == "first draft"
    assert revised["reviewer_feedback"] == ["too vague", "no example"]
    assert revised["inputs"] == {}
    assert "reviewer rejected your previous output" in revised["instructions"]
    assert [(e.approved, e.revision) for e in of_type(events, TaskValidated)] == [
        (False, 0),
        (True, 1),
    ]
    assert of_type(events, TaskValidated)[0].reasons == ["too vague", "no example"]
    assert of_type(events, TaskFinished)[0].output == "second draft"
    # The second review saw the revised output.
    assert payload(reviews(model)[1])["output"] == "second draft"


@pytest.mark.parametrize("max_revisions", [0, 1, 3])
async def test_endless_rejection_is_bounded_by_max_revisions(max_revisions: int) -> None:
    script = Script(review=reject("still wrong"))

    result, events, model = await run(plan_of(task("t1")), script, max_revisions=max_revisions)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"  # the last version is kept, marked as not approved
    assert t1.approved is False
    assert t1.revisions == max_revisions
    assert len(worker_requests(model, "do t1")) == max_revisions + 1
    assert len(reviews(model)) == max_revisions + 1
    assert len(of_type(events, TaskValidated)) == max_revisions + 1
    assert result.confidence == {"t1": 0.6}


async def test_rejection_lowers_the_confidence_of_dependants_too() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"))
    script = Script(review={"do t1": reject("wrong"), "do t2": APPROVE})

    result, _, _ = await run(plan, script)

    assert result.confidence == {"t1": 0.6, "t2": 0.6}
    assert result.tasks["t2"].approved is True


async def test_a_garbage_verdict_keeps_the_output_unjudged() -> None:
    script = Script(tasks={"do t1": "the output"}, review="Looks great to me!")

    result, events, model = await run(plan_of(task("t1")), script)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.output == "the output"
    assert t1.approved is None
    assert t1.revisions == 0
    assert t1.unreviewed and t1.unreviewed.startswith("the validator failed")
    assert result.confidence == {"t1": 0.8}  # unjudged is less than approved
    [validated] = of_type(events, TaskValidated)
    assert validated.approved is None
    assert validated.reasons[0].startswith("not reviewed: the validator failed")
    assert len(worker_requests(model, "do t1")) == 1  # no revision for an unjudged output
    assert len(reviews(model)) == 3  # the validator's own retry policy was applied


async def test_a_failing_validator_does_not_fail_the_task() -> None:
    script = Script(review=ModelError("validator offline"))

    result, events, _ = await run(plan_of(task("t1")), script)

    assert result.status == "succeeded"
    assert result.tasks["t1"].approved is None
    assert "validator offline" in of_type(events, TaskValidated)[0].reasons[0]


async def test_a_failed_revision_keeps_the_last_good_output_as_rejected() -> None:
    script = Script(tasks={"do t1": ["draft", ModelError("down")]}, review=reject("bad"))

    result, _, _ = await run(plan_of(task("t1")), script)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.output == "draft"
    assert t1.approved is False
    assert t1.revisions == 1
    assert t1.attempts == 2


async def test_review_usage_is_part_of_the_task_usage() -> None:
    result, _, model = await run(plan_of(task("t1")), Script(review=APPROVE))

    [work] = worker_requests(model, "do t1")
    [review] = reviews(model)

    def words(request) -> int:
        return len((request.system or "").split()) + len(request.messages[0].content.split())

    usage = result.tasks["t1"].usage
    assert usage.input_tokens == words(work) + words(review)
    assert usage.output_tokens == len("out:do t1".split()) + len(APPROVE.split())


async def test_the_validator_does_not_review_its_own_tasks() -> None:
    script = Script(review=reject("never asked"))

    result, events, model = await run(plan_of(task("t1", "reviewer")), script)

    assert result.tasks["t1"].approved is None
    assert reviews(model) == []
    assert of_type(events, TaskValidated) == []


async def test_without_a_validator_nothing_is_reviewed() -> None:
    model = ScriptedModel(Script(review=reject("never asked")))

    result = await Orchestrator(TEAM, model=model).run("x", plan=plan_of(task("t1")))

    assert result.tasks["t1"].approved is None
    assert reviews(model) == []


def test_an_unknown_validator_is_refused() -> None:
    with pytest.raises(UnknownWorkerError, match="'nope'"):
        Orchestrator(TEAM, model=ScriptedModel([]), validator="nope")
