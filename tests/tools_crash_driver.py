"""A run whose worker appends lines to a file through a tool, stopped dead at one point.

    python tests/tools_crash_driver.py DB DIR POINT [--idempotent] [--high] [--resume RUN]

The worker's tool loop (scripted) calls ``append_line`` with "a", then with "b", then
answers. POINT is where this process stops for the test to ``kill -9`` it: it prints
``POINT <name>`` and blocks forever, the first time it gets there:
``turn_stored`` (the first turn is in the store), ``call_started`` (the first call is
stored ``started``, the tool has not run), ``in_tool`` (the tool appended its line and
has not returned), ``call_finished`` (the first call is stored ``finished``, the next turn
not asked), ``task_checkpoint`` (the last turn answered, the task's checkpoint not
written); ``none`` never stops. With ``--resume RUN`` it resumes that run instead.

The tool appends ``<idempotency key> <line>`` to DIR/out.txt; ``--idempotent`` declares it
idempotent, and it then skips a key it finds there (deduplication by the key);
``--high`` makes it high risk, each call approved by a callback in the first process
(none in a resumed one). Every
start of the tool is logged to DIR/tool.log and every model turn asked to DIR/model.log,
before they act, so the test counts even what a kill cut short. Prints ``RESULT
<status>`` at the end.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from foreman import Orchestrator
from foreman.models.base import ModelRequest, ToolCall
from foreman.plan.schema import Plan, Task
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, ToolContext, tool
from foreman.tools.records import ToolCallStatus
from foreman.workers import Registry, Worker

PLAN = Plan(tasks=[Task(id="t1", worker="writer", instructions="append a then b")])


def halt(point: str) -> None:
    """Tell the test where we are, then never go on (it kills us)."""
    print(f"POINT {point}", flush=True)
    threading.Event().wait()


def main() -> None:
    db, folder, point = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    idempotent, high = "--idempotent" in sys.argv, "--high" in sys.argv
    resume = sys.argv[sys.argv.index("--resume") + 1] if "--resume" in sys.argv else None
    stop = point if resume is None else "none"
    out, tool_log, model_log = folder / "out.txt", folder / "tool.log", folder / "model.log"

    @tool(idempotent=idempotent, risk="high" if high else "low")
    def append_line(line: str, context: ToolContext) -> str:
        """Append a line to the output file."""
        with tool_log.open("a") as log:
            log.write(f"{context.idempotency_key} {line}\n")
        key = context.idempotency_key
        if (
            idempotent
            and out.exists()
            and any(row.split(" ", 1)[0] == key for row in out.read_text().splitlines())
        ):
            return f"already appended {line}"
        with out.open("a") as file:
            file.write(f"{key} {line}\n")
        if stop == "in_tool" and line == "a":
            halt("in_tool")
        return f"appended {line}"

    class Stopping(SQLiteStore):
        async def save_tool_turn(self, record, calls=()) -> None:
            await super().save_tool_turn(record, calls)
            if stop == "turn_stored" and record.turn == 1:
                await asyncio.to_thread(halt, stop)

        async def save_tool_call(self, record) -> None:
            await super().save_tool_call(record)
            started = record.status is ToolCallStatus.started
            if record.seq == 1 and stop == ("call_started" if started else "call_finished"):
                await asyncio.to_thread(halt, stop)

        async def save_checkpoints(self, run_id, checkpoints, calls=()) -> None:
            if stop == "task_checkpoint" and checkpoints:
                await asyncio.to_thread(halt, stop)
            await super().save_checkpoints(run_id, checkpoints, calls)

    def answer(request: ModelRequest):
        turn = sum(message.role == "assistant" for message in request.messages)
        with model_log.open("a") as log:
            log.write(f"turn {turn}\n")
        if turn == 0:
            return [ToolCall(id="", name="append_line", arguments={"line": "a"})]
        if turn == 1:
            return [ToolCall(id="", name="append_line", arguments={"line": "b"})]
        return "appended both"

    registry = Registry(
        [
            Worker(
                name="writer",
                description="Appends lines.",
                system_prompt="Append what you are asked to.",
                tools=("append_line",),
            )
        ],
        tools=Toolbox([append_line]),
    )

    async def go() -> None:
        orchestrator = Orchestrator(
            registry,
            model=ScriptedModel(answer),
            store=Stopping(db),
            assembly="concat",
            approve=(lambda approval: True) if high and resume is None else None,
        )
        async with orchestrator:
            if resume is not None:
                result = await orchestrator.resume(resume)
            else:

                def started(event) -> None:
                    if event.type == "run_started":
                        print(f"RUN {event.run_id}", flush=True)

                result = await orchestrator.run("append", plan=PLAN, on_event=started)
        print(f"RESULT {result.status.value}", flush=True)

    asyncio.run(go())


if __name__ == "__main__":
    main()
