"""CPU of the call ledger per model call: one ``CallScope.open`` and its ``close``.

    python bench/bench_ledger.py                 # the bench's model, free-text worker
    python bench/bench_ledger.py --model openai:gpt-4o-mini --schema

Every task of a run opens and settles at least one call on its way to and from its model,
on the event loop's thread, so this cost is paid once per task in a 1000-task fan-out
(``bench_engine.py``). Calls are opened in a burst and then settled, as in a fan-out;
the figure is the best of ``--repeat`` bursts, with the garbage collector off.
"""

from __future__ import annotations

import argparse
import gc
import time

from foreman.ledger.recorder import CallLedger
from foreman.ledger.records import CallPurpose
from foreman.models.base import Message, ModelRequest, ModelResponse, Usage

SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "scores": {"type": "array"}},
    "required": ["summary"],
}


def burst(model: str, request: ModelRequest, response: ModelResponse, calls: int) -> tuple:
    """Seconds per call to open ``calls`` calls, then to settle them."""
    ledger = CallLedger("bench", write_started=False)
    scopes = [ledger.scope(CallPurpose.task, task_id=f"t{i}", worker="w") for i in range(calls)]
    begin = time.perf_counter()
    opened = [scope.open(model, request) for scope in scopes]
    middle = time.perf_counter()
    for call in opened:
        call.close("ok", response=response)
    end = time.perf_counter()
    return (middle - begin) / calls, (end - middle) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="scripted", help="the model name calls are made to")
    parser.add_argument("--schema", action="store_true", help="a structured worker's request")
    parser.add_argument("--calls", type=int, default=3000, help="calls per burst")
    parser.add_argument("--repeat", type=int, default=7, help="bursts (best is shown)")
    args = parser.parse_args(argv)
    request = ModelRequest(
        system="You are a simulated worker.",
        messages=[Message(role="user", content='{"instructions": "t1"}')],
        output_schema=SCHEMA if args.schema else None,
    )
    response = ModelResponse(
        text="output of t1",
        usage=Usage(input_tokens=120, output_tokens=40),
        model=args.model.partition(":")[2] or args.model,
    )
    gc.disable()
    runs = [burst(args.model, request, response, args.calls) for _ in range(args.repeat)]
    opening, closing = min(r[0] for r in runs), min(r[1] for r in runs)
    print(
        f"{args.model}{' (schema)' if args.schema else ''}: open {opening * 1e6:.2f} us, "
        f"close {closing * 1e6:.2f} us, open+close {(opening + closing) * 1e6:.2f} us"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
