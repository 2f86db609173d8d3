"""Routers: the embedding router (deterministic vectors) and the LLM router (scripted
model) each choose a worker, fall back when unsure, and drive planned and delegating runs
from Python, team files and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from foreman import Budget, Orchestrator, RunStatus
from foreman.engine.routing import DELEGATE_TOOL
from foreman.errors import ConfigError, UnknownWorkerError
from foreman.events import EVENT_ADAPTER, TaskRouted
from foreman.ledger.records import CallPurpose
from foreman.models.base import ModelRequest, ToolCall
from foreman.routing import EmbeddingRouter, LLMRouter, RoutingError
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel, WordsEmbedder
from foreman.workers.registry import Registry, load_team

LAUNCHER = Path(__file__).with_name("scripted_cli.py")

PLAN = {
    "tasks": [
        {"id": "t1", "worker": "writer", "instructions": "Fix the bug in this Python code."},
        {
            "id": "t2",
            "worker": "coder",
            "instructions": "Summarise the document in a few sentences.",
            "depends_on": ["t1"],
        },
    ]
}


def planner_and_workers(route_to: str = "analyst", route_latency: float = 0.0) -> ScriptedModel:
    """Answers the planner with PLAN, the LLM router with ``route_to`` (after
    ``route_latency`` seconds), workers with ok."""

    def answer(request: ModelRequest) -> str:
        properties = (request.output_schema or {}).get("properties", {})
        if "tasks" in properties:
            return json.dumps(PLAN)
        if "worker" in properties:
            return json.dumps({"worker": route_to})
        return "ok"

    def latency(request: ModelRequest) -> float:
        routing = "worker" in (request.output_schema or {}).get("properties", {})
        return route_latency if routing else 0.0

    return ScriptedModel(answer, latency=latency)


# --- the routers alone ------------------------------------------------------------------


async def test_the_embedding_router_picks_the_most_similar_worker() -> None:
    router = EmbeddingRouter(Registry.default(), WordsEmbedder())
    route = await router.route("Fix a bug in the code and review the pull request.")
    assert (route.worker, route.router, route.fallback) == ("coder", "embedding", False)
    assert route.score is not None and route.score >= router.min_score


async def test_the_embedding_router_falls_back_when_no_worker_is_a_confident_match() -> None:
    router = EmbeddingRouter(Registry.default(), WordsEmbedder(), fallback="writer")
    route = await router.route("zebra quokka xylophone")  # no word in any profile
    assert (route.worker, route.fallback) == ("writer", True)
    unsure = EmbeddingRouter(Registry.default(), WordsEmbedder())
    kept = await unsure.route("zebra quokka xylophone", default="analyst")
    assert (kept.worker, kept.fallback) == ("analyst", True)  # the planner's choice stays


async def test_the_embedding_router_embeds_the_workers_once() -> None:
    embedder = WordsEmbedder()
    router = EmbeddingRouter(Registry.default(), embedder)
    await router.route("Summarise the report.")
    await router.route_many(["Write an email.", "Check the claims."])
    assert [len(call) for call in embedder.calls][1:] == [1, 2]  # profiles only at first


async def test_the_llm_router_asks_once_with_the_names_as_the_only_answers() -> None:
    model = ScriptedModel([json.dumps({"worker": "fact_checker"})])
    route = await LLMRouter(Registry.default(), model).route("Is this claim true?")
    assert (route.worker, route.router, route.score) == ("fact_checker", "llm", None)
    (request,) = model.requests
    allowed = request.output_schema["properties"]["worker"]["enum"]
    assert allowed == [*Registry.default().names(), "none"]
    assert json.loads(request.messages[0].content)["task"] == "Is this claim true?"


async def test_the_llm_router_falls_back_on_none_and_on_answers_that_never_parse() -> None:
    said_none = ScriptedModel([json.dumps({"worker": "none"})])
    route = await LLMRouter(Registry.default(), said_none, fallback="writer").route("hmm")
    assert (route.worker, route.fallback) == ("writer", True)
    nonsense = ScriptedModel(lambda request: '{"worker": "astronaut"}')
    route = await LLMRouter(Registry.default(), nonsense, fallback="analyst").route("hmm")
    assert (route.worker, route.fallback) == ("analyst", True)
    assert len(nonsense.requests) == 3  # retried as a malformed answer, then gave up
    again = ScriptedModel([json.dumps({"worker": "none"})])
    with pytest.raises(RoutingError, match="no fallback"):
        await LLMRouter(Registry.default(), again).route("hmm")


def test_a_fallback_must_be_a_worker() -> None:
    with pytest.raises(UnknownWorkerError, match="'ghost'"):
        EmbeddingRouter(Registry.default(), WordsEmbedder(), fallback="ghost")
    with pytest.raises(ConfigError, match="router must be"):
        Orchestrator(model=ScriptedModel([]), router="coin-flip")


# --- in runs ------------------------------------------------------------------------------


async def test_a_planned_run_goes_where_the_embedding_router_says(tmp_path: Path) -> None:
    embedder = WordsEmbedder()
    store = SQLiteStore(tmp_path / "runs.db")
    orchestrator = Orchestrator(
        model=planner_and_workers(), router="embedding", embedder=embedder, store=store
    )
    events: list[Any] = []
    result = await orchestrator.run("a request", on_event=events.append)
    assert [(t.id, t.worker) for t in result.plan.tasks] == [("t1", "coder"), ("t2", "summariser")]
    routed = [e for e in events if isinstance(e, TaskRouted)]
    assert [(e.task_id, e.worker, e.planned_worker) for e in routed] == [
        ("t1", "coder", "writer"),
        ("t2", "summariser", "coder"),
    ]
    assert all(e.router == "embedding" and e.score is not None for e in routed)
    assert all(EVENT_ADAPTER.validate_json(e.model_dump_json()) == e for e in routed)
    record = await store.get_run(result.run_id)
    assert record.settings["router"] == "embedding"
    assert record.plan.tasks[0].worker == "coder"  # the stored plan is the routed one
    await orchestrator.aclose()


async def test_the_llm_router_call_is_in_the_ledger_with_its_own_purpose() -> None:
    orchestrator = Orchestrator(model=planner_and_workers("analyst"), router="llm")
    result = await orchestrator.run("a request")
    assert {t.worker for t in result.plan.tasks} == {"analyst"}
    calls = await orchestrator.store.list_calls(run_id=result.run_id)
    assert [c.purpose for c in calls].count(CallPurpose.route) == 2
    assert {c.parent for c in calls if c.purpose is CallPurpose.route} == {"route"}


async def test_a_budget_refusing_one_route_call_lets_those_running_finish() -> None:
    """Under on_limit="finish" the route calls already running finish and are booked at
    what they spent: the run returned at once, booking them `interrupted` at estimates,
    while they went on calling the model after it ended."""
    model = planner_and_workers("analyst", route_latency=0.05)
    orchestrator = Orchestrator(model=model, router="llm", budget=Budget(max_calls=2))
    result = await orchestrator.run("a request")

    assert result.status is RunStatus.over_budget
    calls = await orchestrator.store.list_calls(run_id=result.run_id)
    assert [(c.purpose.value, c.status.value, c.estimated) for c in calls] == [
        ("plan", "ok", False),
        ("route", "ok", False),
    ]
    assert len(model.requests) == 2  # and nothing still running: all were answered


async def test_a_plan_cut_short_while_routing_is_kept_and_routed_on_resume() -> None:
    """A budget reached while routing threw the plan away: the resume paid the planner
    again. The plan is kept, and the resume routes it (each task once)."""
    model = planner_and_workers("analyst", route_latency=0.05)
    orchestrator = Orchestrator(model=model, router="llm", budget=Budget(max_calls=2))
    stopped = await orchestrator.run("a request")
    assert stopped.status is RunStatus.over_budget

    done = await orchestrator.resume(stopped.run_id, budget=Budget(max_calls=20))
    assert done.status is RunStatus.succeeded
    assert {task.worker for task in done.plan.tasks} == {"analyst"}  # routed after all
    calls = await orchestrator.store.list_calls(run_id=stopped.run_id)
    assert [c.purpose for c in calls].count(CallPurpose.plan) == 1  # planned once
    versions = await orchestrator.store.list_plans(stopped.run_id)
    assert [v.reason for v in versions] == [None, "routed on resume"]


async def test_an_unsure_llm_router_keeps_the_planners_choice_or_uses_the_fallback() -> None:
    kept = await Orchestrator(model=planner_and_workers("none"), router="llm").run("r")
    assert [t.worker for t in kept.plan.tasks] == ["writer", "coder"]
    fell = await Orchestrator(
        model=planner_and_workers("none"), router="llm", router_fallback="researcher"
    ).run("r")
    assert [t.worker for t in fell.plan.tasks] == ["researcher", "researcher"]


async def test_a_delegating_run_gets_one_delegate_tool_and_the_router_picks_the_worker() -> None:
    def answer(request: ModelRequest) -> Any:
        if request.tools:
            if any(m.role == "assistant" for m in request.messages):
                return "the answer"
            call = ToolCall(id="", name=DELEGATE_TOOL, arguments={"instructions": "Fix the bug."})
            return [call]
        return "fixed"

    model = ScriptedModel(answer)
    orchestrator = Orchestrator(
        model=model, router="embedding", embedder=WordsEmbedder(), mode="delegate"
    )
    events: list[Any] = []
    result = await orchestrator.run("a request", on_event=events.append)
    assert result.answer == "the answer"
    assert [(t.id, t.worker) for t in result.plan.tasks] == [("d1-1", "coder")]
    assert [e.task_id for e in events if isinstance(e, TaskRouted)] == ["d1-1"]
    turns = [r for r in model.requests if r.tools]
    assert all([t.name for t in r.tools] == [DELEGATE_TOOL] for r in turns)
    second = turns[1].messages[1].tool_calls[0]  # the conversation shows the one tool
    assert (second.id, second.name) == ("d1-1", DELEGATE_TOOL)


async def test_a_routed_call_refused_leaves_room_for_the_next_one_routed() -> None:
    """Two delegations allowed, three asked; the first is refused (its input is no earlier
    delegation): the other two are routed and run, not refused as worker 'delegate'."""

    def delegate(instructions: str, *inputs: str) -> ToolCall:
        arguments = {"instructions": instructions, **({"inputs": list(inputs)} if inputs else {})}
        return ToolCall(id="", name=DELEGATE_TOOL, arguments=arguments)

    def answer(request: ModelRequest) -> Any:
        if not request.tools:
            return "done"
        if any(m.role == "assistant" for m in request.messages):
            return "the answer"
        return [delegate("Fix the bug.", "d9-9"), delegate("Fix the bug."), delegate("Fix it.")]

    result = await Orchestrator(
        model=ScriptedModel(answer),
        router="embedding",
        embedder=WordsEmbedder(),
        mode="delegate",
        max_tasks=2,
    ).run("a request")
    assert [t.id for t in result.plan.tasks] == ["d1-2", "d1-3"]
    assert all(result.tasks[t].succeeded for t in ("d1-2", "d1-3"))


async def test_resume_rebuilds_the_router_and_never_routes_again(tmp_path: Path) -> None:
    from foreman.engine.settings import RunSettings
    from foreman.results import RunStatus
    from foreman.workers.spec import RiskLevel

    team = Registry.default()
    team.add(team.get("coder").model_copy(update={"risk": RiskLevel.medium}))
    embedder = WordsEmbedder()
    store = SQLiteStore(tmp_path / "runs.db")
    model = planner_and_workers()
    first = Orchestrator(
        team,
        model=model,
        router="embedding",
        router_fallback="writer",
        embedder=embedder,
        store=store,
    )
    paused = await first.run("a request")  # t1 was routed to the coder, who must ask first
    assert paused.status is RunStatus.waiting_approval
    embedded = len(embedder.calls)
    settings = RunSettings.model_validate((await store.get_run(paused.run_id)).settings)
    assert (settings.router, settings.router_fallback) == ("embedding", "writer")
    again = Orchestrator.from_settings(
        settings,
        team,
        models={"scripted": model},
        store=store,
        embedder=embedder,
        approve=lambda request: True,
    )
    assert isinstance(again.router, EmbeddingRouter) and again.router.fallback == "writer"
    done = await again.resume(paused.run_id)
    assert done.status is RunStatus.succeeded
    assert [t.worker for t in done.plan.tasks] == ["coder", "summariser"]
    assert len(embedder.calls) == embedded  # the stored plan was routed already


# --- team files -------------------------------------------------------------------------


def test_a_team_file_router_section_sets_the_router(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(
        "include_defaults: true\nrouter: {kind: llm, fallback: writer}\nembedder: local\n"
    )
    team = load_team(path)
    assert (team.router.kind, team.router.fallback, team.embedder) == ("llm", "writer", "local")
    orchestrator = Orchestrator(team, model=planner_and_workers())
    assert orchestrator.config.router == "llm"
    assert orchestrator.config.router_fallback == "writer"
    path.write_text("include_defaults: true\nrouter: embedding\n")
    assert load_team(path).router.kind == "embedding"


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ("router: {kind: llm, fallbak: writer}", "fallbak"),
        ("router: {kind: dice}", "kind"),
        ("router: {kind: llm, fallback: ghost}", "'ghost'"),
        ("memory: {enabled: true, limt: 3}", "limt"),
        ("embedder: 3", "embedder"),
    ],
)
def test_team_file_routing_sections_are_strict(tmp_path: Path, section: str, complaint: str):
    path = tmp_path / "team.yaml"
    path.write_text(f"include_defaults: true\n{section}\n")
    with pytest.raises(ConfigError, match=complaint):
        load_team(path)


# --- the CLI ------------------------------------------------------------------------------


def run_cli(tmp_path: Path, spec: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"log": str(tmp_path / "calls.log"), **spec}))
    return subprocess.run(
        [sys.executable, str(LAUNCHER), str(spec_path), *args, "--db", str(tmp_path / "r.db")],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def test_foreman_run_router_embedding_end_to_end(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"plan": PLAN}, "run", "a request", "--router", "embedding", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    routed = [(e["task_id"], e["worker"]) for e in events if e["type"] == "task_routed"]
    assert routed == [("t1", "coder"), ("t2", "summariser")]  # the bundled model's choice
    assert events[-1]["result"]["status"] == "succeeded"


def test_foreman_run_router_llm_with_a_fallback_end_to_end(tmp_path: Path) -> None:
    spec = {"plan": PLAN, "routes": {"Fix the bug": "coder"}}
    done = run_cli(
        tmp_path,
        spec,
        "run",
        "a request",
        "--router",
        "llm",
        "--router-fallback",
        "writer",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    routed = [(e["worker"], e["fallback"]) for e in events if e["type"] == "task_routed"]
    assert routed == [("coder", False), ("writer", True)]


def test_foreman_run_mode_delegate_router_embedding_end_to_end(tmp_path: Path) -> None:
    turns = [
        [{"worker": DELEGATE_TOOL, "instructions": "Fix the bug in this Python code."}],
        "done",
    ]
    done = run_cli(
        tmp_path,
        {"plan": PLAN, "turns": turns},
        "run",
        "a request",
        "--mode",
        "delegate",
        "--router",
        "embedding",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    routed = [(e["task_id"], e["worker"]) for e in events if e["type"] == "task_routed"]
    assert routed == [("d1-1", "coder")]
    assert events[-1]["result"]["answer"] == "done"


def test_an_unknown_router_fallback_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        {"plan": PLAN},
        "run",
        "a request",
        "--router",
        "llm",
        "--router-fallback",
        "ghost",
    )
    assert done.returncode == 2
    assert "ghost" in done.stderr and "Traceback" not in done.stderr


def test_a_router_fallback_without_a_router_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"plan": PLAN}, "run", "a request", "--router-fallback", "writer")
    assert done.returncode == 2
    assert "add --router embedding" in done.stderr and "Traceback" not in done.stderr


async def test_the_tasks_a_revision_adds_are_routed_too() -> None:
    from helpers import plan_of, task
    from replan_helpers import KEEP, model, states

    fix = {"id": "t2", "worker": "writer", "instructions": "Fix the bug in this Python code."}
    fix["depends_on"] = ["t1"]

    def revise(shown: dict[str, Any]) -> dict[str, Any]:
        if "t2" in states(shown):
            return KEEP
        return {"reason": "a bug", "add": [fix], "change": [], "drop": []}

    scripted = model(plan_of(task("t1")), revise)
    events: list[Any] = []
    orchestrator = Orchestrator(
        model=scripted, replan="always", router="embedding", embedder=WordsEmbedder()
    )
    result = await orchestrator.run("req", on_event=events.append)
    assert result.plan.task("t2").worker == "coder"
    routed = [(e.task_id, e.worker, e.planned_worker) for e in events if isinstance(e, TaskRouted)]
    assert ("t2", "coder", "writer") in routed
    assert result.tasks["t2"].worker == "coder"
