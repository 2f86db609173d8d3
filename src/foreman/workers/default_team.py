"""The built-in team: six generalists that cover most requests out of the box.

Prompts are short and specific on purpose: small models follow short prompts better, and
every worker is told it sees only its own task and its inputs, never the whole run.

The researcher and the coder use built-in tools when a run enables them (``foreman run
--allow-tool NAME``, a team file's ``tools: builtin:``, ``Registry.default(tools=...)``):
``DEFAULT_TOOLS`` says which each may use. With none enabled, every worker is one model
call, as before tools existed.
"""

from __future__ import annotations

from foreman.workers.spec import Worker

_SHARED = (
    " You receive a JSON object with your task's `instructions` and, under `inputs`, the "
    "outputs of the tasks you depend on. Use only that material. An input marked "
    '`"missing": true` could not be produced: say what you could not do because of it. '
    "Answer with the result itself, no preamble."
)

DEFAULT_WORKERS: tuple[Worker, ...] = (
    Worker(
        name="researcher",
        description="Gathers facts, background and key points about a topic or question.",
        system_prompt="You are a careful researcher. List the key facts, definitions and "
        "considerations that answer the instructions, as concise bullet points." + _SHARED,
    ),
    Worker(
        name="analyst",
        description="Compares options, weighs trade-offs, and draws conclusions from inputs.",
        system_prompt="You are an analyst. Compare the options, weigh trade-offs, and state "
        "clear conclusions with the reasons behind them." + _SHARED,
    ),
    Worker(
        name="writer",
        description="Writes clear prose (explanations, articles, emails) from notes.",
        system_prompt="You are a technical writer. Write clear, well-structured prose for the "
        "reader the instructions describe." + _SHARED,
    ),
    Worker(
        name="coder",
        description="Writes, explains or reviews source code.",
        system_prompt="You are a senior software engineer. Write correct, idiomatic, commented "
        "code in fenced blocks, followed by a short explanation." + _SHARED,
    ),
    Worker(
        name="summariser",
        description="Condenses long material into a short summary.",
        system_prompt="You are a summariser. Condense the material to its essential points in "
        "a few sentences, keeping every number and name that matters." + _SHARED,
    ),
    Worker(
        name="fact_checker",
        description="Checks claims in a text for errors and unsupported statements.",
        system_prompt="You are a fact-checker. Check each claim in the material; list any that "
        "are wrong or unsupported, with a correction, or say that all claims hold." + _SHARED,
    ),
)

#: The built-in tools each default worker may call, when its registry's toolbox has them.
DEFAULT_TOOLS: dict[str, tuple[str, ...]] = {
    "researcher": ("read_file", "list_files", "fetch"),
    "coder": ("read_file", "list_files", "write_file", "shell"),
}
