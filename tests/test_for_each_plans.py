"""For-each tasks in plans and on screen: validation, what the planner is taught, ``show``
and ``replay`` of item tasks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import processes
from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import ForemanError, PlanError
from foreman.plan import Plan, constrained_plan_schema, validate_plan
from foreman.plan.foreach import list_fields
from foreman.plan.planner import Planner
from foreman.plan.prompts import planner_system_prompt
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, is_planner, payload, plan_of, task, worker

runner = CliRunner()


class Module(BaseModel):
    name: str
    files: list[str]


class Survey(BaseModel):
    summary: str
    modules: list[Module]
    owner: Module


TEAM = Registry(
    [
        worker("surveyor", output_schema=Survey),
        worker("researcher"),
        worker("writer"),
    ]
)


def errors_of(*tasks) -> list[str]:
    return validate_plan(plan_of(*tasks), TEAM, max_tasks=10)


# --- validation ---------------------------------------------------------------------------


def test_a_for_each_over_a_list_field_of_a_dependency_is_valid() -> None:
    assert (
        errors_of(task("t1", "surveyor"), task("t2", "writer", "t1", for_each="t1.modules")) == []
    )
    assert (
        errors_of(
            task("t1", "surveyor"),
            task("t2", "writer", "t1", for_each="t1.owner.files"),
            task("t3", "writer", "t2", for_each="t2"),  # over another for-each task's outputs
        )
        == []
    )


@pytest.mark.parametrize(
    ("for_each", "deps", "error"),
    [
        (
            "t1.modules",
            [],
            "Task 't2' has for_each 't1.modules', which names none of its dependencies "
            "(it has none); write a dependency's id, then the path to the list: 't1.files'.",
        ),
        (
            "t9.modules",
            ["t1"],
            "Task 't2' has for_each 't9.modules', which names none of its dependencies (t1); "
            "write a dependency's id, then the path to the list: 't1.files'.",
        ),
        (
            "t1.parts",
            ["t1"],
            "Task 't2' has for_each 't1.parts', but in t1's output, the output has no field "
            "'parts' (fields: summary, modules, owner).",
        ),
        (
            "t1.summary",
            ["t1"],
            "Task 't2' has for_each 't1.summary', but in t1's output, summary is string, "
            "not a list.",
        ),
        (
            "t1",
            ["t1"],
            "Task 't2' has for_each 't1', but in t1's output, the output is object, not a list.",
        ),
        (
            "t1.owner.name",
            ["t1"],
            "Task 't2' has for_each 't1.owner.name', but in t1's output, owner.name is "
            "string, not a list.",
        ),
    ],
)
def test_a_for_each_that_cannot_name_a_list_is_one_clear_error(
    for_each: str, deps: list[str], error: str
) -> None:
    assert errors_of(task("t1", "surveyor"), task("t2", "writer", *deps, for_each=for_each)) == [
        error
    ]


def test_a_text_worker_cannot_be_iterated_over() -> None:
    assert errors_of(task("t1"), task("t2", "writer", "t1", for_each="t1.x")) == [
        "Task 't2' has for_each 't1.x', but t1's worker 'researcher' answers in text; "
        "for_each needs a dependency whose worker has an output schema with a list."
    ]


def test_ids_of_items_and_the_item_input_are_reserved() -> None:
    errors = errors_of(
        task("t1", "surveyor"),
        task("item", "writer"),
        task("t2", "writer", "t1", "item", for_each="t1.modules"),
        task("t2.1", "writer"),
    )
    assert errors == [
        "Task 't2' runs for each item, so ids 't2.1', 't2.2'... are its items'; rename 't2.1'.",
        "Task 't2' runs for each item and gets its item as input 'item'; rename its "
        "dependency 'item'.",
    ]


def test_a_given_plan_is_checked_before_it_runs() -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1", for_each="t1.files"))
    with pytest.raises(PlanError, match="answers in text"):
        Orchestrator(TEAM, model=ScriptedModel([])).run_sync("x", plan=plan)


# --- what the planner is taught -----------------------------------------------------------


def test_list_fields_are_found_through_nested_models() -> None:
    schema = Survey.model_json_schema()
    assert list_fields(schema) == ["modules", "owner.files"]


def test_the_planner_is_told_which_lists_exist_and_how_to_run_for_each_of_them() -> None:
    prompt = planner_system_prompt(TEAM, 5, "refactor billing")
    assert "- surveyor: The surveyor test worker. (lists: modules, owner.files)" in prompt
    assert '"for_each": the id of the task that returns the list' in prompt
    plain = planner_system_prompt(Registry([worker("researcher")]), 5, "x")
    assert "for_each" not in plain and "lists:" not in plain


def test_the_constrained_schema_offers_for_each_only_when_a_list_exists() -> None:
    schema = constrained_plan_schema(["a"], 3, with_for_each=True)
    first, second = schema["properties"]["tasks"]["prefixItems"][:2]
    assert "for_each" not in first["properties"]  # t1 has no dependency to iterate over
    assert second["properties"]["for_each"]["type"] == "string"
    assert "for_each" not in second["required"]
    plain = constrained_plan_schema(["a"], 3)
    assert "for_each" not in plain["properties"]["tasks"]["prefixItems"][1]["properties"]


async def test_a_planned_for_each_is_accepted_and_runs() -> None:
    plan = plan_of(task("t1", "surveyor"), task("t2", "writer", "t1", for_each="t1.modules"))
    survey = Survey(
        summary="s",
        modules=[Module(name="a", files=["a.py"]), Module(name="b", files=[])],
        owner=Module(name="o", files=[]),
    )
    model = ScriptedModel(Script(plan, tasks={"do t1": survey.model_dump_json()}))
    planner = Planner(model, TEAM)
    outcome = await planner.plan("refactor")
    assert outcome.plan.tasks[1].for_each == "t1.modules"
    (request,) = [r for r in model.requests if is_planner(r)]
    assert "for_each" in json.dumps(request.output_schema)

    result = await Orchestrator(TEAM, model=model).run("refactor")
    assert [payload(r)["inputs"]["item"]["name"] for r in model.requests[-3:-1]] == ["a", "b"]
    assert result.tasks["t2"].output == ["out:do t2", "out:do t2"]


# --- show and replay ----------------------------------------------------------------------


def _stored_run(items: list[str]) -> str:
    plan = Plan(
        tasks=[
            task("t1", "surveyor"),
            task("t2", "researcher", "t1", for_each="t1.owner.files"),
            task("t3", "writer", "t2"),
        ]
    )
    survey = Survey(summary="s", modules=[], owner=Module(name="o", files=items))

    def answer(request):
        item = payload(request)["inputs"].get("item")
        return f"notes on {item}"

    model = ScriptedModel(Script(tasks={"do t1": survey.model_dump_json(), "do t2": answer}))

    async def go() -> str:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            orchestrator = Orchestrator(TEAM, model=model, store=store)
            return (await orchestrator.run("notes", plan=plan)).run_id
        finally:
            await store.aclose()

    return asyncio.run(go())


def show(*args: str) -> str:
    result = runner.invoke(app, ["show", *args], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_show_lists_the_items_under_their_for_each_task_in_item_order() -> None:
    run_id = _stored_run([f"f{n}.py" for n in range(12)])
    shown = show(run_id)
    assert "t2 researcher succeeded for each t1.owner.files: do t2" in shown
    lines = [line.strip("│ ├└─") for line in shown.splitlines() if "t2." in line]
    assert lines[0].startswith("t2.1 succeeded: notes on f0.py")
    assert lines[9].startswith("t2.10 succeeded: notes on f9.py")
    assert "… 2 more item(s) (--full shows them all)" in shown
    assert "t2.12 succeeded: notes on f11.py" in show(run_id, "--full")


def test_show_and_replay_of_an_item_task() -> None:
    run_id = _stored_run(["a.py", "b.py"])
    shown = show(run_id, "t2.2")
    assert "t2.2" in shown and "notes on b.py" in shown
    assert "b.py" in shown  # what it was sent: its item

    async def replay(task_id: str):
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        model = ScriptedModel(lambda request: "again " + payload(request)["inputs"]["item"])
        try:
            return await Orchestrator(TEAM, model=model, store=store).replay(run_id, task_id)
        finally:
            await store.aclose()

    assert asyncio.run(replay("t2.2")).output == "again b.py"
    with pytest.raises(ForemanError, match=r"runs once per item .* replay one of its items"):
        asyncio.run(replay("t2"))
    with pytest.raises(ForemanError, match=r"has no task 't2\.3'"):
        asyncio.run(replay("t2.3"))


# --- the docs -----------------------------------------------------------------------------


def test_the_docs_python_example_prints_what_the_docs_say(tmp_path) -> None:
    text = (Path(__file__).parents[1] / "docs" / "for-each.md").read_text()
    (snippet,) = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    printed = re.search(r"^prints\n\n```text\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert printed is not None
    path = tmp_path / "snippet.py"
    path.write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"FOREMAN_DB": str(tmp_path / "runs.db"), "HOME": str(tmp_path)}
    done = processes.run([sys.executable, str(path)], timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed.group(1)
