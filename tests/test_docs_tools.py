"""The Python example of docs/tools.md runs as shown, on a model that uses the tools.

In a child process every model name resolves to a scripted model that plans one task for
the example's ``support`` worker, looks the order up, emails the customer, then answers;
the example's own approver callback decides the email. Run one by hand with
``python tests/test_docs_tools.py SNIPPET.py``.
"""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path
from typing import Any

import processes

DOC = Path(__file__).parents[1] / "docs" / "tools.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_tools_example_runs_and_its_tools_are_called(tmp_path: Path) -> None:
    snippet = FENCE.findall(DOC.read_text())[0]
    path = tmp_path / "snippet.py"
    path.write_text(snippet)

    done = processes.run([sys.executable, __file__, str(path)], timeout=120)

    assert done.returncode == 0, done.stderr
    printed, outbox = done.stdout.strip().splitlines()
    assert printed.startswith("succeeded")
    sent = json.loads(outbox)
    assert len(sent) == 1 and sent[0].endswith("jo@example.com: Your order A-1234")


def stand_in(name: str | None = None) -> Any:
    from foreman.models.base import ModelRequest, ToolCall
    from foreman.testing import ScriptedModel

    def answer(request: ModelRequest) -> Any:
        if "tasks" in (request.output_schema or {}).get("properties", {}):
            task = {"id": "t1", "worker": "support", "instructions": "Answer the customer."}
            return json.dumps({"tasks": [task]})
        if not request.tools:
            return "Your order has shipped."
        turn = sum(message.role == "assistant" for message in request.messages)
        if turn == 0:
            return [ToolCall(id="", name="lookup_order", arguments={"order_id": "1234"})]
        if turn == 1:  # the tool said how ids look: try again
            return [ToolCall(id="", name="lookup_order", arguments={"order_id": "A-1234"})]
        if turn == 2:
            arguments = {"to": "jo@example.com", "subject": "Your order A-1234", "body": "x"}
            return [ToolCall(id="", name="send_email", arguments=arguments)]
        return "Order A-1234 has shipped; I emailed you the details."

    return ScriptedModel(answer, name=name or "scripted")


if __name__ == "__main__":
    import foreman.models.pool

    foreman.models.pool.load_model = stand_in
    names = runpy.run_path(sys.argv[1], run_name="__main__")
    print(json.dumps(names["OUTBOX"]))
