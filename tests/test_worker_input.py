"""A worker's input: the same JSON text whichever way it is built."""

from __future__ import annotations

import json

import pytest

from foreman.engine.prompts import worker_input


@pytest.mark.parametrize(
    "instructions",
    ["f1", "", 'say "hi"\\n', "line\nbreak\ttab", "é ü 😀 \u2028 \x00 \x1f", "{}"],
)
def test_a_task_without_inputs_reads_as_the_encoder_writes_it(instructions: str) -> None:
    text = worker_input(instructions, {})
    assert text == json.dumps({"instructions": instructions, "inputs": {}}, ensure_ascii=False)
    assert json.loads(text) == {"instructions": instructions, "inputs": {}}


def test_inputs_args_and_memories_are_all_there() -> None:
    text = worker_input("go", {"a": "out"}, {"n": 1}, memories={"m": "x"})
    assert json.loads(text) == {
        "instructions": "go",
        "inputs": {"a": "out"},
        "args": {"n": 1},
        "memories": {"m": "x"},
    }
