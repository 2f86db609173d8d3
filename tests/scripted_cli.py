"""Run the real ``foreman`` CLI in its own process, on a scripted model.

    python tests/scripted_cli.py SPEC.json foreman-args...

SPEC.json: {"plan": {...}, "latency": {"do t3": 30}, "fail": {"do t2": "400 bad"},
"log": "calls.log", "revisions": [{...}]}; "plans": [[text, plan], ...] answers a planner
whose prompt holds ``text`` (a nested team's worker name, say) with that plan instead.
Every model name resolves to one ScriptedModel that answers the planner with the plan,
each plan revision with the next of "revisions" (then no change), synthesis with FINAL,
and each task with ``out:<instructions>`` (or the JSON of its entry in "outputs")
after its latency; each worker call appends its instructions to the log *before* waiting,
so a test can count executions even of calls a SIGKILL cut short. An item task of a
for-each task is known by its instructions, a space and its item (``do t2 a``).

For ``--mode delegate``: "turns" scripts the tool-calling orchestrator, one entry per turn,
picked by how many turns the conversation it is sent already holds (so a resumed run, whose
conversation is rebuilt from its tasks, gets the turn it is at): a list of delegations
``{"worker": ..., "instructions": ..., "inputs": [...]}`` or the final answer's text. A
request that offers tools is the orchestrator's (the scripted teams' workers have none).
A delegation's "worker" may be "delegate" (the one tool of a routed run, ``--router``).
"routes": {text: worker} answers the LLM router (``--router llm``) for a task whose
instructions hold ``text`` ("none" when no text matches: the fallback applies).
"lists": {"lister": "files"} gives the team file's worker ``lister`` a structured output
with a list of strings ``files`` (team files cannot declare schemas), for for-each plans.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import create_model

from foreman.engine.prompts import SYNTHESIS_SYSTEM
from foreman.errors import ModelError
from foreman.models.base import ModelRequest, ToolCall
from foreman.testing import ScriptedModel


def build(spec: dict) -> ScriptedModel:
    log = Path(spec["log"])

    def kind(request: ModelRequest) -> str:
        if request.tools:
            return "turn"
        if "tasks" in (request.output_schema or {}).get("properties", {}):
            return "plan"
        if "add" in (request.output_schema or {}).get("properties", {}):
            return "revision"
        if "worker" in (request.output_schema or {}).get("properties", {}):
            return "route"
        if request.system == SYNTHESIS_SYSTEM:
            return "synthesis"
        payload = json.loads(request.messages[0].content)
        if "item" in payload["inputs"]:
            return f"{payload['instructions']} {payload['inputs']['item']}"
        return payload["instructions"]

    def latency(request: ModelRequest) -> float:
        what = kind(request)
        if what not in ("plan", "synthesis", "revision", "turn", "route"):
            with log.open("a") as file:
                file.write(what + "\n")
        return float(spec.get("latency", {}).get(what, 0.0))

    def answer(request: ModelRequest):
        what = kind(request)
        if what == "plan":  # "plans": [[text, plan]...]: the first whose text the planner sees
            seen = (request.system or "") + request.messages[0].content
            chosen = [plan for text, plan in spec.get("plans", []) if text in seen]
            return json.dumps(chosen[0] if chosen else spec["plan"])
        if what == "synthesis":
            return "FINAL"
        if what == "route":  # "routes": {text: worker}, the first whose text the task holds
            task = json.loads(request.messages[0].content)["task"]
            chosen = [w for text, w in spec.get("routes", {}).items() if text in task]
            return json.dumps({"worker": chosen[0] if chosen else "none"})
        if what == "turn":
            turn = spec["turns"][sum(m.role == "assistant" for m in request.messages)]
            if isinstance(turn, str):
                return turn
            return [
                ToolCall(
                    id="",
                    name=d["worker"],
                    arguments={"instructions": d["instructions"], "inputs": d.get("inputs", [])},
                )
                for d in turn
            ]
        if what == "revision":
            revisions = spec.get("revisions") or [{"add": [], "change": [], "drop": []}]
            return json.dumps({"reason": "", **revisions.pop(0)})
        if what in spec.get("fail", {}):
            return ModelError(spec["fail"][what])
        if what in spec.get("outputs", {}):
            return json.dumps(spec["outputs"][what])
        return f"out:{what}"

    return ScriptedModel(answer, latency=latency)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    model = build(spec)
    import foreman.models.pool

    foreman.models.pool.load_model = lambda name=None: model
    if lists := spec.get("lists"):
        import foreman.cli.common

        load_team = foreman.cli.common.load_team

        def with_lists(path):
            team = load_team(path)
            for name, field in lists.items():
                schema = create_model(f"{name}_output", **{field: (list[str], ...)})
                team.add(team.get(name).model_copy(update={"output_schema": schema}))
            return team

        foreman.cli.common.load_team = with_lists
    sys.argv = ["foreman", *sys.argv[2:]]
    from foreman.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
