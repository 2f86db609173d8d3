"""examples/competitive_analysis.py, run as a user runs it (``--scripted --json``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from foreman.events import EVENT_ADAPTER, OrchestratorTurn, RunFinished, TaskFinished, TaskStarted

EXAMPLE = Path(__file__).parent.parent / "examples" / "competitive_analysis.py"


def test_the_orchestrator_researches_competitors_in_parallel_then_compares() -> None:
    src = str(Path(__file__).parent.parent / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--scripted", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    events = [EVENT_ADAPTER.validate_json(line) for line in done.stdout.splitlines()]

    turns = [e for e in events if isinstance(e, OrchestratorTurn)]
    assert [len(t.delegations) for t in turns] == [3, 1, 0] and turns[-1].final
    research, compare = turns[0].delegations, turns[1].delegations[0]
    assert {t.worker for t in research} == {"researcher"}
    assert (compare.worker, compare.depends_on) == ("analyst", [t.id for t in research])

    # Parallel: every research task started before the first one finished.
    order = [(type(e), e.task_id) for e in events if isinstance(e, TaskStarted | TaskFinished)]
    first_finish = next(i for i, (kind, _) in enumerate(order) if kind is TaskFinished)
    assert {task_id for _, task_id in order[:first_finish]} == {t.id for t in research}
    # The comparison ran after all of them, and was the next turn's only delegation.
    assert order.index((TaskStarted, compare.id)) > max(
        order.index((TaskFinished, t.id)) for t in research
    )

    [finished] = [e for e in events if isinstance(e, RunFinished)]
    result = finished.result
    assert result.status == "succeeded"
    assert "Tasklane's opening" in result.answer  # the analyst's output made it through
    assert all(name in result.answer for name in ("Acme Boards", "Globex Tasks"))
    assert result.calls == 7  # three turns, four delegations
    assert [t.id for t in result.plan.tasks] == ["d1-1", "d1-2", "d1-3", "d2-1"]
