"""Task policies: isolated worker input, retries, timeouts, fallbacks, failure handling."""

from __future__ import annotations

import asyncio
import json

from pydantic import BaseModel

from foreman import Orchestrator, RunResult
from foreman.errors import ModelError, ProviderServerError, RateLimitError
from foreman.events import (
    Assembled,
    TaskFailed,
    TaskFallback,
    TaskFinished,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
)
from foreman.models.base import ModelRequest
from foreman.testing import ScriptedModel
from foreman.workers import Registry, RetryPolicy
from helpers import (
    Script,
    collect,
    index_of,
    instructions_of,
    is_synthesis,
    of_type,
    payload,
    plan_of,
    task,
    worker,
    worker_requests,
)

TEAM = Registry([worker("researcher"), worker("writer")])


async def run(
    plan, script: Script, team: Registry = TEAM, request: str = "x", **kwargs
) -> tuple[RunResult, list, ScriptedModel]:
    model = kwargs.pop("model", None) or ScriptedModel(script)
    events: list = []
    orchestrator = Orchestrator(team, model=model, **kwargs)
    async with asyncio.timeout(10):
        result = await orchestrator.run(request, plan=plan, on_event=events.append)
    return result, events, model


# --- what a worker sees -------------------------------------------------------------------


async def test_each_worker_sees_only_its_instructions_and_its_inputs() -> None:
    plan = plan_of(
        task("t1"),
        task("t2"),
        task("t3", "writer", "t1"),
        task("t4", "writer", "t2", "t3"),
    )
    request = "SECRET-REQUEST: explain certificate pinning to a manager"

    result, _, model = await run(plan, Script(plan), request=request, validator=None)

    assert result.status == "succeeded"
    seen = {instructions_of(r): r for r in worker_requests(model)}
    assert set(seen) == {"do t1", "do t2", "do t3", "do t4"}
    expected_inputs = {
        "do t1": {},
        "do t2": {},
        "do t3": {"t1": "out:do t1"},
        "do t4": {"t2": "out:do t2", "t3": "out:do t3"},
    }
    for instructions, req in seen.items():
        assert len(req.messages) == 1
        assert req.messages[0].role == "user"
        assert payload(req) == {
            "instructions": instructions,
            "inputs": expected_inputs[instructions],
        }
        assert "SECRET-REQUEST" not in req.messages[0].content
        assert "SECRET-REQUEST" not in (req.system or "")
    assert seen["do t3"].system == TEAM.get("writer").system_prompt
    assert seen["do t1"].system == TEAM.get("researcher").system_prompt


async def test_task_args_reach_the_worker() -> None:
    plan = plan_of(task("t1", args={"topic": "tls"}))

    _, _, model = await run(plan, Script())

    [req] = worker_requests(model)
    assert payload(req) == {"instructions": "do t1", "inputs": {}, "args": {"topic": "tls"}}


async def test_worker_settings_reach_the_request() -> None:
    team = Registry([worker("researcher", max_tokens=77, temperature=0.3)])

    _, _, model = await run(plan_of(task("t1")), Script(), team)

    [req] = worker_requests(model)
    assert req.max_tokens == 77
    assert req.temperature == 0.3
    assert req.output_schema is None


# --- retries and timeouts -----------------------------------------------------------------


async def test_transient_errors_are_retried_and_counted() -> None:
    script = Script(
        tasks={"do t1": [RateLimitError("429 slow down"), ProviderServerError("503 busy"), "ok"]}
    )

    result, events, model = await run(plan_of(task("t1")), script)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.output == "ok"
    assert t1.attempts == 3
    retried = of_type(events, TaskRetried)
    assert [(e.task_id, e.attempt) for e in retried] == [("t1", 1), ("t1", 2)]
    assert "429 slow down" in retried[0].error
    assert "503 busy" in retried[1].error
    assert all(e.delay == 0 for e in retried)
    assert of_type(events, TaskFinished)[0].attempts == 3
    assert len(worker_requests(model)) == 3


async def test_retries_stop_at_max_attempts() -> None:
    team = Registry([worker("researcher", retry=RetryPolicy(max_attempts=2, initial_delay=0))])
    script = Script(tasks={"do t1": RateLimitError("429")})

    result, events, model = await run(plan_of(task("t1")), script, team)

    assert result.tasks["t1"].status == "failed"
    assert result.tasks["t1"].attempts == 2
    assert len(worker_requests(model)) == 2
    assert len(of_type(events, TaskRetried)) == 1
    assert "429" in (result.tasks["t1"].error or "")


async def test_a_non_transient_error_is_not_retried() -> None:
    script = Script(tasks={"do t1": [ModelError("400 bad request"), "never used"]})

    result, events, model = await run(plan_of(task("t1")), script)

    t1 = result.tasks["t1"]
    assert t1.status == "failed"
    assert t1.attempts == 1
    assert t1.error == "400 bad request"
    assert of_type(events, TaskRetried) == []
    assert len(worker_requests(model)) == 1


async def test_a_slow_call_times_out_and_is_retried() -> None:
    team = Registry([worker("researcher", timeout=0.05)])
    calls = 0

    def latency(request: ModelRequest) -> float:
        nonlocal calls
        if is_synthesis(request):
            return 0
        calls += 1
        return 1.0 if calls == 1 else 0.0

    model = ScriptedModel(Script(), latency=latency)
    result, events, _ = await run(plan_of(task("t1")), Script(), team, model=model)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.attempts == 2
    [retried] = of_type(events, TaskRetried)
    assert "gave no answer within 0.05s" in retried.error
    assert "'researcher'" in retried.error


async def test_a_call_that_always_times_out_fails_with_a_timeout_error() -> None:
    team = Registry(
        [worker("researcher", timeout=0.02, retry=RetryPolicy(max_attempts=2, initial_delay=0))]
    )
    model = ScriptedModel(Script(), latency=lambda r: 0 if is_synthesis(r) else 1.0)

    result, _, _ = await run(plan_of(task("t1")), Script(), team, model=model)

    assert result.tasks["t1"].status == "failed"
    assert result.tasks["t1"].attempts == 2
    assert "gave no answer within 0.02s" in (result.tasks["t1"].error or "")


# --- fallbacks ----------------------------------------------------------------------------


async def test_fallback_model_takes_over_after_retries() -> None:
    team = Registry([worker("researcher", model="primary", fallback_model="backup")])
    primary = ScriptedModel(lambda r: RateLimitError("primary 429"), name="primary")
    backup = ScriptedModel(Script(), name="backup")
    default = ScriptedModel(Script(), name="default")

    result, events, _ = await run(
        plan_of(task("t1")),
        Script(),
        team,
        model=default,
        models={"primary": primary, "backup": backup},
    )

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.output == "out:do t1"
    assert t1.model == "backup"
    assert t1.attempts == 4  # three on the primary, one on the backup
    assert len(primary.requests) == 3
    assert len(backup.requests) == 1
    [fallback] = of_type(events, TaskFallback)
    assert (fallback.kind, fallback.to) == ("model", "backup")
    assert "primary 429" in fallback.error
    assert len(of_type(events, TaskRetried)) == 2
    assert worker_requests(default) == []


async def test_a_non_transient_error_moves_straight_to_the_fallback_model() -> None:
    team = Registry([worker("researcher", model="primary", fallback_model="backup")])
    primary = ScriptedModel(lambda r: ModelError("no such model"), name="primary")
    backup = ScriptedModel(Script(), name="backup")

    result, events, _ = await run(
        plan_of(task("t1")), Script(), team, models={"primary": primary, "backup": backup}
    )

    assert result.tasks["t1"].attempts == 2
    assert len(primary.requests) == 1
    assert of_type(events, TaskRetried) == []


async def test_fallback_worker_takes_over_when_the_worker_fails() -> None:
    team = Registry([worker("researcher", fallback="writer"), worker("writer")])
    researcher_prompt = team.get("researcher").system_prompt

    def answer(request: ModelRequest) -> object:
        if request.system == researcher_prompt:
            return ModelError("researcher is down")
        return "rescued by the writer"

    result, events, model = await run(plan_of(task("t1")), Script(tasks={"do t1": answer}), team)

    t1 = result.tasks["t1"]
    assert t1.status == "succeeded"
    assert t1.output == "rescued by the writer"
    assert t1.attempts == 2
    [fallback] = of_type(events, TaskFallback)
    assert (fallback.kind, fallback.to) == ("worker", "writer")
    assert "researcher is down" in fallback.error
    systems = [r.system for r in worker_requests(model)]
    assert systems == [researcher_prompt, team.get("writer").system_prompt]


async def test_a_fallback_cycle_ends_after_each_worker_tried_once() -> None:
    team = Registry(
        [worker("researcher", fallback="writer"), worker("writer", fallback="researcher")]
    )
    script = Script(tasks={"do t1": ModelError("everyone is down")})

    result, events, model = await run(plan_of(task("t1")), script, team)

    assert result.tasks["t1"].status == "failed"
    assert len(worker_requests(model)) == 2
    fallbacks = of_type(events, TaskFallback)
    assert [(e.kind, e.to) for e in fallbacks] == [("worker", "writer")]


# --- failure policies ---------------------------------------------------------------------


async def test_skip_policy_marks_dependants_inputs_missing_and_the_run_partial() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3"))
    script = Script(tasks={"do t1": ModelError("t1 exploded")}, synthesis="SYNTHESISED")

    result, events, model = await run(plan, script)

    assert result.status == "partial"
    assert result.partial
    assert result.tasks["t1"].status == "failed"
    assert result.tasks["t2"].status == "succeeded"
    assert result.tasks["t2"].missing_inputs == ["t1"]
    [failed] = of_type(events, TaskFailed)
    assert (failed.task_id, failed.policy, failed.error) == ("t1", "skip", "t1 exploded")
    [t2_request] = worker_requests(model, "do t2")
    assert payload(t2_request)["inputs"] == {
        "t1": {"missing": True, "reason": "task failed: t1 exploded"}
    }
    assert result.confidence == {"t1": 0.0, "t2": 0.0, "t3": 1.0}
    answer = result.answer or ""
    assert answer.startswith("SYNTHESISED")
    assert "Partial result: some parts could not be produced." in answer
    assert "- t1 (researcher) failed: t1 exploded" in answer
    assert "Confidence per part: t1 0.00, t2 0.00, t3 1.00" in answer


async def test_missing_inputs_skip_skips_the_dependant() -> None:
    team = Registry([worker("researcher"), worker("writer", missing_inputs="skip")])
    plan = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "researcher", "t2"))
    script = Script(tasks={"do t1": ModelError("t1 exploded")})

    result, events, model = await run(plan, script, team)

    assert result.status == "partial"
    t2 = result.tasks["t2"]
    assert t2.status == "skipped"
    assert t2.missing_inputs == ["t1"]
    [skipped] = of_type(events, TaskSkipped)
    assert skipped.task_id == "t2"
    assert "t1" in skipped.reason
    assert "t2" not in [e.task_id for e in of_type(events, TaskStarted)]
    assert worker_requests(model, "do t2") == []
    # t3 marks its input as missing (its worker's default) and still runs.
    [t3_request] = worker_requests(model, "do t3")
    assert payload(t3_request)["inputs"]["t2"]["missing"] is True
    assert "task skipped" in payload(t3_request)["inputs"]["t2"]["reason"]
    assert "- t2 (writer) skipped:" in (result.answer or "")


async def test_missing_inputs_skip_does_not_skip_when_inputs_exist() -> None:
    team = Registry([worker("researcher"), worker("writer", missing_inputs="skip")])

    result, events, _ = await run(plan_of(task("t1"), task("t2", "writer", "t1")), Script(), team)

    assert result.status == "succeeded"
    assert of_type(events, TaskSkipped) == []


class CancelRecordingModel(ScriptedModel):
    """A ScriptedModel that notes the instructions of each call cancelled mid-way."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cancelled: list[str] = []

    async def complete(self, request: ModelRequest):
        try:
            return await super().complete(request)
        except asyncio.CancelledError:
            self.cancelled.append(instructions_of(request))
            raise


async def test_abort_policy_stops_the_run_and_cancels_running_tasks() -> None:
    team = Registry([worker("researcher"), worker("critical", on_failure="abort")])
    plan = plan_of(task("t1", "critical"), task("t2"), task("t3", "researcher", "t1"))
    script = Script(tasks={"do t1": ModelError("critical failure")})
    model = CancelRecordingModel(
        script, latency=lambda r: 30.0 if instructions_of(r) == "do t2" else 0
    )

    result, events, _ = await run(plan, script, team, model=model)

    assert result.status == "aborted"
    assert result.answer is None
    assert result.error is not None
    assert "'t1'" in result.error
    assert "critical failure" in result.error
    [failed] = of_type(events, TaskFailed)
    assert (failed.task_id, failed.policy) == ("t1", "abort")
    # t2 was running and its call was cancelled before run() returned; t3 never started.
    index_of(events, TaskStarted, "t2")  # raises if t2 never started
    assert model.cancelled == ["do t2"]
    assert of_type(events, TaskFinished) == []
    assert "t3" not in [e.task_id for e in of_type(events, TaskStarted)]
    assert of_type(events, Assembled) == []
    assert not any(is_synthesis(r) for r in model.requests)
    # The task that aborted the run is on record; the cancelled one has no result.
    assert result.tasks["t1"].status == "failed"
    assert result.tasks["t1"].error == "critical failure"
    assert set(result.tasks) == {"t1"}
    assert events[-1].type == "run_finished"


async def test_abort_keeps_tasks_that_finished_before_it() -> None:
    team = Registry([worker("researcher"), worker("critical", on_failure="abort")])
    plan = plan_of(task("t1"), task("t2", "critical", "t1"))
    script = Script(tasks={"do t2": ModelError("boom")})

    result, _, _ = await run(plan, script, team)

    assert result.status == "aborted"
    assert result.tasks["t1"].output == "out:do t1"
    assert result.usage == result.tasks["t1"].usage + result.tasks["t2"].usage


async def test_abort_through_stream_ends_with_run_finished() -> None:
    team = Registry([worker("critical", on_failure="abort")])
    orchestrator = Orchestrator(
        team, model=ScriptedModel(Script(tasks={"do t1": ModelError("boom")}))
    )

    events = await collect(orchestrator.stream("x", plan=plan_of(task("t1", "critical"))))

    assert events[-1].type == "run_finished"
    assert events[-1].result.status == "aborted"


# --- structured output --------------------------------------------------------------------


class Facts(BaseModel):
    facts: list[str]
    sure: bool


async def test_output_schema_turns_valid_json_into_the_model() -> None:
    team = Registry([worker("extractor", output_schema=Facts), worker("writer")])
    plan = plan_of(task("t1", "extractor"), task("t2", "writer", "t1"))
    answer = '```json\n{"facts": ["a", "b"], "sure": true}\n```'

    result, _, model = await run(plan, Script(tasks={"do t1": answer}), team)

    assert result.tasks["t1"].output == Facts(facts=["a", "b"], sure=True)
    [t1_request] = worker_requests(model, "do t1")
    assert t1_request.output_schema == Facts.model_json_schema()
    [t2_request] = worker_requests(model, "do t2")
    assert payload(t2_request)["inputs"] == {"t1": {"facts": ["a", "b"], "sure": True}}


async def test_output_that_does_not_fit_the_schema_is_retried() -> None:
    team = Registry([worker("extractor", output_schema=Facts)])
    script = Script(tasks={"do t1": ['{"facts": "not a list"}', '{"facts": [], "sure": false}']})

    result, events, _ = await run(plan_of(task("t1", "extractor")), script, team)

    assert result.tasks["t1"].output == Facts(facts=[], sure=False)
    assert result.tasks["t1"].attempts == 2
    [retried] = of_type(events, TaskRetried)
    assert "does not match Facts" in retried.error


async def test_output_that_never_fits_the_schema_fails_the_task() -> None:
    team = Registry([worker("extractor", output_schema=Facts), worker("researcher")])
    plan = plan_of(task("t1", "extractor"), task("t2"))
    script = Script(tasks={"do t1": "Here are the facts: a, b."})

    result, events, model = await run(plan, script, team)

    t1 = result.tasks["t1"]
    assert t1.status == "failed"
    assert t1.attempts == 3
    assert "does not match Facts" in (t1.error or "")
    assert len(of_type(events, TaskRetried)) == 2
    assert len(worker_requests(model, "do t1")) == 3
    # The words of every failed answer were still paid for.
    assert t1.usage.output_tokens == 3 * len("Here are the facts: a, b.".split())
    assert result.status == "partial"


async def test_structured_output_in_a_single_task_answer_is_json_text() -> None:
    team = Registry([worker("extractor", output_schema=Facts)])
    script = Script(tasks={"do t1": '{"facts": ["x"], "sure": true}'})

    result, _, _ = await run(plan_of(task("t1", "extractor")), script, team)

    assert json.loads(result.answer or "") == {"facts": ["x"], "sure": True}
