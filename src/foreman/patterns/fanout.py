"""Fan-out: split a large input into chunks, process each concurrently, aggregate.

Synthesis over many results is staged: the chunk results are merged in groups of at most
``max_group`` by the aggregate worker, those merges in groups again, up to one final
aggregate. No aggregation task reads more than ``max_group`` results, so none overflows a
window (``max_input_tokens`` lowers the group size to what the workers' ``max_tokens``
guarantee fits), and every chunk's result reaches the final answer through exactly one
path: nothing is dropped to make room (synthesis loss). With an aggregate worker that has
an ``output_schema``, every merge and the final answer are that structure.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from foreman.engine.orchestrator import Orchestrator
from foreman.errors import ConfigError
from foreman.events import Event
from foreman.patterns.base import OnEvent, Pattern, check_name
from foreman.plan.schema import Plan, Task
from foreman.results import RunResult
from foreman.workers.spec import Worker

Splitter = Callable[[str], list[str]]

CHUNK_INSTRUCTIONS = (
    "Read the text in `args.chunk` (part `args.part` of `args.parts`) and report what it "
    "contributes to the request in `args.request`, or, when there is none, its key points."
)
MERGE_INSTRUCTIONS = (
    "Merge the partial results in `inputs` into one result of the same form, keeping every "
    "item of every input; drop only exact duplicates. Note inputs marked missing."
)
AGGREGATE_INSTRUCTIONS = (
    "Combine the results in `inputs` into one answer to the request in `args.request` (or, "
    "when there is none, one account of the whole), keeping every item of every input; "
    "drop only exact duplicates. Note inputs marked missing."
)


class FanOut(Pattern):
    """``FanOut(worker=reader, aggregate=synthesiser, max_group=8)``.

    ``run(request, chunks=[...])``: each chunk is processed for ``request`` (the
    question). Without ``chunks``, ``request`` is the material itself, cut by
    ``splitter`` (by default ``split_text`` into ``chunk_chars`` pieces).
    """

    def __init__(
        self,
        worker: Worker,
        aggregate: Worker,
        *,
        instructions: str = CHUNK_INSTRUCTIONS,
        aggregate_instructions: str = AGGREGATE_INSTRUCTIONS,
        splitter: Splitter | None = None,
        chunk_chars: int = 8000,
        max_group: int = 8,
        max_input_tokens: int | None = None,
        name: str = "fanout",
    ) -> None:
        if max_group < 2:
            raise ConfigError(f"max_group must be at least 2, not {max_group}.")
        if max_input_tokens is not None:
            largest = max(worker.max_tokens, aggregate.max_tokens)
            max_group = min(max_group, max_input_tokens // largest)
            if max_group < 2:
                raise ConfigError(
                    f"max_input_tokens {max_input_tokens} cannot hold two results of up to "
                    f"{largest} tokens (the workers' max_tokens); raise it or lower those."
                )
        if chunk_chars < 1:
            raise ConfigError(f"chunk_chars must be at least 1, not {chunk_chars}.")
        self.worker = worker
        self.aggregate = aggregate
        self.instructions = instructions
        self.aggregate_instructions = aggregate_instructions
        self.splitter: Splitter = splitter or (lambda text: split_text(text, chunk_chars))
        #: Results one aggregation task reads, at most.
        self.max_group = max_group
        self.name = check_name(name, "Pattern name")

    def workers(self) -> list[Worker]:
        return list({w.name: w for w in (self.worker, self.aggregate)}.values())

    def plan_for(self, request: str, chunks: Sequence[str] | None = None) -> Plan:
        """Chunk tasks, then the aggregation tree; ``aggregate`` is the answer task."""
        question = request if chunks is not None else None
        parts = list(chunks) if chunks is not None else self.splitter(request)
        if not parts:
            raise ConfigError("Nothing to fan out: no chunks (the input is empty).")
        asked = {"request": question} if question is not None else {}
        width = len(str(len(parts)))
        tasks = [
            Task(
                id=f"part-{i:0{width}d}",
                worker=self.worker.name,
                instructions=self.instructions,
                args={"chunk": chunk, "part": i, "parts": len(parts), **asked},
            )
            for i, chunk in enumerate(parts, start=1)
        ]
        level, depth = [task.id for task in tasks], 0
        while len(level) > self.max_group:
            depth += 1
            groups = _balanced(level, self.max_group)
            width = len(str(len(groups)))
            merges = [
                Task(
                    id=f"merge-{depth}-{i:0{width}d}",
                    worker=self.aggregate.name,
                    instructions=MERGE_INSTRUCTIONS,
                    depends_on=group,
                    args=asked or None,
                )
                for i, group in enumerate(groups, start=1)
            ]
            tasks += merges
            level = [task.id for task in merges]
        tasks.append(
            Task(
                id="aggregate",
                worker=self.aggregate.name,
                instructions=self.aggregate_instructions,
                depends_on=level,
                args=asked or None,
            )
        )
        return Plan(tasks=tasks, answer_task="aggregate")

    async def run(
        self,
        request: str,
        *,
        chunks: Sequence[str] | None = None,
        orchestrator: Orchestrator | None = None,
        on_event: OnEvent | None = None,
        **settings: Any,
    ) -> RunResult:
        """``Pattern.run``, on ``chunks`` when given (see the class docstring)."""
        plan = self.plan_for(request, chunks)
        return await self._run(request, plan, orchestrator, on_event, settings)

    def stream(
        self,
        request: str,
        *,
        chunks: Sequence[str] | None = None,
        orchestrator: Orchestrator | None = None,
        **settings: Any,
    ) -> AsyncIterator[Event]:
        """``Pattern.stream``, on ``chunks`` when given."""
        return self._stream(request, self.plan_for(request, chunks), orchestrator, settings)


def split_text(text: str, max_chars: int) -> list[str]:
    """``text`` in pieces of at most ``max_chars``, cut between paragraphs where it can,
    else between words, else anywhere; nothing is lost but the blank lines between
    pieces."""
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        while len(paragraph) > max_chars:
            cut = paragraph.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            head, paragraph = paragraph[:cut], paragraph[cut:].lstrip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if not paragraph:
            continue
        joined = f"{current}\n\n{paragraph}" if current else paragraph
        if len(joined) <= max_chars:
            current = joined
        else:
            pieces.append(current)
            current = paragraph
    if current:
        pieces.append(current)
    return pieces


def _balanced(ids: list[str], limit: int) -> list[list[str]]:
    """``ids`` in order, in the fewest groups of at most ``limit``, sizes within one."""
    count = -(-len(ids) // limit)
    return [ids[i * len(ids) // count : (i + 1) * len(ids) // count] for i in range(count)]
