"""The bundled SmolLM2 model, for real: grammar-constrained plans, a non-blocking loop,
and one whole ``foreman run`` from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from foreman.errors import ConfigError
from foreman.events import EVENT_ADAPTER, RunFinished
from foreman.models import load_model
from foreman.models.base import Message, ModelRequest
from foreman.models.local import LocalModel, _Job, bundled_model_path
from foreman.models.local_grammar import _gbnf
from foreman.plan import constrained_plan_schema, parse_plan, validate_plan
from foreman.plan.prompts import planner_system_prompt
from foreman.workers import Registry


def test_bundled_model_is_found_through_package_metadata() -> None:
    path = bundled_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert load_model("local").name == "local"


def test_a_missing_gguf_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalModel(str(tmp_path / "nope.gguf"))


def test_grammar_allows_any_prefix_of_the_ordered_tasks() -> None:
    grammar = _gbnf(json.dumps(constrained_plan_schema(["a", "b"], 3)))
    tasks_rule = next(line for line in grammar.splitlines() if line.startswith("tasks ::="))
    assert tasks_rule == (
        'tasks ::= "[" space tasks-tuple-0 ("," space tasks-tuple-1 '
        '("," space tasks-tuple-2)?)? "]" space'
    )
    assert "char{1,400}" in grammar  # bounded strings, written compactly


@pytest.mark.local_model
async def test_the_tiny_model_writes_valid_plans_under_the_grammar() -> None:
    registry = Registry.default()
    model = LocalModel()
    for request in ("Explain how HTTPS works", "Compare Python and Go for command-line tools"):
        response = await model.complete(
            ModelRequest(
                system=planner_system_prompt(registry, 4, request),
                messages=[Message(role="user", content=request)],
                output_schema=constrained_plan_schema(registry.names(), 4),
                max_tokens=600,
                temperature=0.0,
            )
        )
        plan, errors = parse_plan(response.text)
        assert plan is not None, errors
        assert validate_plan(plan, registry, max_tasks=4) == []
        assert response.usage.input_tokens > 100 and response.usage.output_tokens > 10


@pytest.mark.local_model
async def test_a_generation_asked_to_stop_stops_inside_llama_cpp_and_the_model_goes_on() -> None:
    """The stop is llama.cpp's own abort check (a C callback reading a flag): a generation
    asked to stop fails at its first step; the next one, not asked, runs as usual."""
    model = LocalModel()
    llama, thread, stopper = await asyncio.to_thread(model._load)
    request = ModelRequest(messages=[Message(role="user", content="Count to five.")])
    request = request.model_copy(update={"max_tokens": 20, "temperature": 0.0})
    job = _Job()

    def generate_stopped():
        stopper.stop(job)  # asked before it began: it stops at its first step
        stopper.start(job)
        try:
            return model._generate(llama, request)
        finally:
            stopper.end()

    with pytest.raises(RuntimeError, match="llama_decode returned 2"):
        await asyncio.wrap_future(thread.submit(generate_stopped))
    answer = await model.complete(request)
    assert answer.text and answer.usage.output_tokens > 0


@pytest.mark.local_model
async def test_generation_never_blocks_the_event_loop_and_calls_are_serialised() -> None:
    model = LocalModel()
    request = ModelRequest(messages=[Message(role="user", content="Count to twenty.")])
    request = request.model_copy(update={"max_tokens": 60, "temperature": 0.0})
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    clock = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    started = loop.time()
    first, second = await asyncio.gather(model.complete(request), model.complete(request))
    elapsed = loop.time() - started
    done.set()
    await clock
    assert first.text and first.text == second.text  # same input, temperature 0, one model
    # A blocked loop would tick once or twice in total; a free one ticks every 10 ms.
    assert ticks >= elapsed / 0.01 * 0.5


@pytest.mark.local_model
@pytest.mark.timeout(900)  # a whole run on one CPU-bound model; the child has its own 600 s
def test_foreman_run_end_to_end_on_the_bundled_model() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("FOREMAN_MODEL", None)
    completed = subprocess.run(
        [sys.executable, "-m", "foreman", "run", "--json", "Explain how HTTPS works"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    events = [EVENT_ADAPTER.validate_json(line) for line in completed.stdout.splitlines()]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    result = finished.result
    assert result.status.value == "succeeded"
    assert result.plan.tasks and all(t.succeeded for t in result.tasks.values())
    assert all(t.model == "local" for t in result.tasks.values())
    assert result.answer and len(result.answer.split()) > 5
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    started = [e.task_id for e in events if e.type == "task_started"]
    assert sorted(started) == sorted(t.id for t in result.plan.tasks)
