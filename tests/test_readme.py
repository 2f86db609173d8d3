"""Every Python snippet in README.md runs as shown, each in a fresh Python process.

A snippet that names a provider model (``anthropic:...``, ``openai:...``, ``local``) would
need a key or minutes of local inference, so in the child every model *name* resolves to
``foreman.testing.ScriptedModel`` (the substitution ``tests/scripted_cli.py`` also uses):
it answers the planner with a valid plan, any structured call with a minimal instance of
the requested schema, and anything else with short text. Model *instances* a snippet builds
itself are used as they are. Nothing else is changed: the snippet file is the README text.
A snippet fails if it raises, or if it leaves a model it named unclosed (with a real
provider that leaks connections: close the orchestrator, e.g. ``async with``).

    python tests/test_readme.py SNIPPET.py      # run one snippet the way the test does
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

import processes

README = Path(__file__).parents[1] / "README.md"
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def snippets() -> list[str]:
    """The README's Python code blocks, dedented as written under list items."""
    found = []
    for indent, body in FENCE.findall(README.read_text()):
        found.append("".join(line.removeprefix(indent) for line in body.splitlines(True)))
    return found


SNIPPETS = snippets()


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize(
    "snippet", SNIPPETS, ids=[f"snippet{n}" for n in range(1, len(SNIPPETS) + 1)]
)
def test_snippet_runs_as_shown(snippet: str, tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"FOREMAN_DB": str(tmp_path / "runs.db"), "HOME": str(tmp_path)}
    done = processes.run([sys.executable, __file__, str(path)], timeout=120, env=env)
    assert done.returncode == 0, f"{snippet}\n--- stderr ---\n{done.stderr}"


# --- the child: a stand-in for every named model --------------------------------------


def sample(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A minimal value of a JSON schema: what a model obeying the schema might answer."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema:
            return sample(schema[union][0], defs)
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {key: sample(value, defs) for key, value in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(schema["items"], defs)] if "items" in schema else []
    return {"boolean": True, "integer": 1, "number": 1.0, "null": None}.get(kind, "text")


_named: list[Any] = []


def stand_in(name: str | None) -> Any:
    from foreman.testing import ScriptedModel

    class StandIn(ScriptedModel):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    def answer(request: Any) -> str:
        schema = request.output_schema
        if schema is None:
            return "An answer."
        if "tasks" in schema.get("properties", {}):
            return json.dumps(
                {
                    "tasks": [
                        {"id": "t1", "worker": "researcher", "instructions": "Find facts."},
                        {"id": "t2", "worker": "analyst", "instructions": "Weigh them."},
                        {
                            "id": "t3",
                            "worker": "writer",
                            "instructions": "Write it up.",
                            "depends_on": ["t1", "t2"],
                        },
                    ]
                }
            )
        return json.dumps(sample(schema))

    model = StandIn(answer, name=name or "scripted")
    _named.append(model)
    return model


def run_snippet(path: str) -> None:
    import foreman.models.pool

    foreman.models.pool.load_model = stand_in
    runpy.run_path(path, run_name="__main__")
    if unclosed := [model.name for model in _named if not model.closed]:
        sys.exit(f"The snippet never closed its orchestrator (models left open: {unclosed}).")


if __name__ == "__main__":
    run_snippet(sys.argv[1])
