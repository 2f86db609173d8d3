"""parse_plan, validate_plan and the order-constrained plan schema."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from foreman.plan import Plan, constrained_plan_schema, find_cycle, parse_plan, validate_plan
from foreman.workers import Registry
from helpers import plan_of, task, worker

PLAN = {
    "tasks": [
        {"id": "t1", "worker": "researcher", "instructions": "find facts", "depends_on": []},
        {"id": "t2", "worker": "writer", "instructions": "write it", "depends_on": ["t1"]},
    ]
}


@pytest.fixture
def registry() -> Registry:
    return Registry.default()


# --- parse_plan ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(PLAN),
        f"```json\n{json.dumps(PLAN, indent=2)}\n```",
        f"```\n{json.dumps(PLAN)}\n```",
        f"Sure! Here is the plan:\n\n{json.dumps(PLAN)}\n\nLet me know if you need more.",
        f"Here you go:\n```json\n{json.dumps(PLAN)}\n```\nThe writer depends on the research.",
        json.dumps(PLAN["tasks"]),  # a bare list of tasks
    ],
    ids=["plain", "json-fence", "bare-fence", "chatter", "fence-and-chatter", "bare-list"],
)
def test_parse_plan_tolerates_fences_and_chatter(text: str) -> None:
    plan, errors = parse_plan(text)

    assert errors == []
    assert plan is not None
    assert [t.id for t in plan.tasks] == ["t1", "t2"]
    assert plan.tasks[1].depends_on == ["t1"]
    assert plan.tasks[1].worker == "writer"


@pytest.mark.parametrize(
    "text",
    [
        "I think we should research first, then write.",
        "",
        '{"tasks": [{"id": "t1", "worker": "researcher", "instructions": "find fa',
        '```json\n{"tasks": [{"id": "t1", "worker": "researcher"\n```',
    ],
    ids=["prose", "empty", "truncated", "truncated-in-fence"],
)
def test_parse_plan_without_usable_json_says_so(text: str) -> None:
    plan, errors = parse_plan(text)

    assert plan is None
    assert len(errors) == 1
    assert "no JSON object" in errors[0]
    assert "JSON only" in errors[0]


def test_parse_plan_reports_wrong_fields_with_their_location() -> None:
    plan, errors = parse_plan('{"tasks": [{"id": "t1", "instructions": "x"}]}')

    assert plan is None
    assert any(e.startswith("tasks.0.worker:") for e in errors), errors


def test_parse_plan_reports_a_missing_tasks_key() -> None:
    plan, errors = parse_plan('{"steps": []}')

    assert plan is None
    assert errors == ["tasks: Field required"]


# --- validate_plan ------------------------------------------------------------------------


def test_a_valid_plan_has_no_errors(registry: Registry) -> None:
    plan = Plan.model_validate(PLAN)

    assert validate_plan(plan, registry, max_tasks=8) == []


def test_empty_plan(registry: Registry) -> None:
    errors = validate_plan(Plan(tasks=[]), registry, max_tasks=8)

    assert errors == ["The plan is empty; it needs at least one task."]


def test_too_many_tasks(registry: Registry) -> None:
    plan = plan_of(*(task(f"t{i}") for i in range(1, 5)))

    errors = validate_plan(plan, registry, max_tasks=3)

    assert errors == ["The plan has 4 tasks; the limit is 3."]
    assert validate_plan(plan, registry, max_tasks=4) == []


def test_duplicate_id(registry: Registry) -> None:
    plan = plan_of(task("t1"), task("t2"), task("t1", instructions="again"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["Task id 't1' is used more than once; ids must be unique."]


def test_an_id_with_a_hash_is_refused(registry: Registry) -> None:
    """``TASK#N`` names a task's tool calls (their approvals): a task named ``b#1`` would
    share its approval with tool call 1 of task ``b``."""
    plan = plan_of(task("b"), task("b#1"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["Task id 'b#1' has a '#', which task ids may not have."]


def test_unknown_worker_lists_the_known_workers(registry: Registry) -> None:
    plan = plan_of(task("t1", "poet"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert len(errors) == 1
    assert "Task 't1' uses unknown worker 'poet'" in errors[0]
    assert "researcher, analyst, writer, coder, summariser, fact_checker" in errors[0]


def test_missing_dependency(registry: Registry) -> None:
    plan = plan_of(task("t1"), task("t2", "writer", "t1", "t9"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["Task 't2' depends on 't9', which is not in the plan."]


def test_self_dependency(registry: Registry) -> None:
    plan = plan_of(task("t1", "researcher", "t1"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["Task 't1' depends on itself."]


def test_two_task_cycle_shows_the_path(registry: Registry) -> None:
    plan = plan_of(task("t1", "researcher", "t2"), task("t2", "writer", "t1"))

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["The dependencies form a cycle: t1 -> t2 -> t1."]


def test_longer_cycle_behind_an_acyclic_prefix(registry: Registry) -> None:
    plan = plan_of(
        task("t1"),
        task("t2", "analyst", "t1", "t4"),
        task("t3", "analyst", "t2"),
        task("t4", "writer", "t3"),
    )

    errors = validate_plan(plan, registry, max_tasks=8)

    assert errors == ["The dependencies form a cycle: t2 -> t4 -> t3 -> t2."]
    assert find_cycle(plan) == ["t2", "t4", "t3", "t2"]


def test_find_cycle_on_a_dag_is_none() -> None:
    diamond = plan_of(
        task("t1"),
        task("t2", "analyst", "t1"),
        task("t3", "analyst", "t1"),
        task("t4", "writer", "t2", "t3"),
    )

    assert find_cycle(diamond) is None


def test_every_problem_is_reported_at_once(registry: Registry) -> None:
    plan = plan_of(task("t1", "poet", "t1"), task("t1", "writer", "t7"))

    errors = validate_plan(plan, registry, max_tasks=1)

    assert len(errors) == 5
    assert errors[0].startswith("The plan has 2 tasks")
    assert any("more than once" in e for e in errors)
    assert any("unknown worker 'poet'" in e for e in errors)
    assert any("depends on itself" in e for e in errors)
    assert any("'t7', which is not in the plan" in e for e in errors)


class SearchArgs(BaseModel):
    query: str
    limit: int = Field(5, ge=1)


def test_args_are_validated_against_the_input_schema() -> None:
    registry = Registry([worker("search", input_schema=SearchArgs), worker("writer")])
    good = plan_of(task("t1", "search", args={"query": "tls", "limit": 2}))
    no_args = plan_of(task("t1", "search"))
    bad_limit = plan_of(task("t1", "search", args={"query": "tls", "limit": 0}))

    assert validate_plan(good, registry, max_tasks=8) == []
    [missing] = validate_plan(no_args, registry, max_tasks=8)
    [too_small] = validate_plan(bad_limit, registry, max_tasks=8)

    assert missing.startswith("Task 't1': args.query: Field required")
    assert "worker 'search' needs args matching" in missing
    assert '"query"' in missing  # the schema itself is shown, so a model can fix the args
    assert too_small.startswith("Task 't1': args.limit: Input should be greater than or equal to 1")


def test_args_are_not_required_by_workers_without_a_schema(registry: Registry) -> None:
    plan = plan_of(task("t1", args={"anything": 1}))

    assert validate_plan(plan, registry, max_tasks=8) == []


# --- constrained_plan_schema ----------------------------------------------------------------


def test_constrained_schema_orders_ids_and_dependencies() -> None:
    schema = constrained_plan_schema(["researcher", "writer"], 4)

    tasks = schema["properties"]["tasks"]
    items = tasks["prefixItems"]
    assert len(items) == 4
    assert tasks["items"] is False
    assert tasks["minItems"] == 1
    assert tasks["maxItems"] == 4
    for k, item in enumerate(items, start=1):
        props = item["properties"]
        assert props["id"]["enum"] == [f"t{k}"]
        assert props["worker"]["enum"] == ["researcher", "writer"]
        assert item["additionalProperties"] is False
        assert set(item["required"]) == {"id", "worker", "instructions", "depends_on"}
        if k == 1:
            assert props["depends_on"]["maxItems"] == 0
            assert "enum" not in props["depends_on"]["items"]
        else:
            assert props["depends_on"]["items"]["enum"] == [f"t{i}" for i in range(1, k)]


def test_constrained_schema_bounds_dependencies_and_instructions() -> None:
    items = constrained_plan_schema(["a"], 6, max_dependencies=2)["properties"]["tasks"][
        "prefixItems"
    ]

    assert [item["properties"]["depends_on"]["maxItems"] for item in items] == [0, 1, 2, 2, 2, 2]
    assert all(item["properties"]["instructions"]["maxLength"] > 0 for item in items)


def test_constrained_schema_admits_args_only_when_asked() -> None:
    plain = constrained_plan_schema(["a"], 2)["properties"]["tasks"]["prefixItems"][0]
    with_args = constrained_plan_schema(["a"], 2, with_args=True)["properties"]["tasks"][
        "prefixItems"
    ][0]

    assert "args" not in plain["properties"]
    assert with_args["properties"]["args"]["type"] == "object"
    assert "args" not in with_args["required"]
