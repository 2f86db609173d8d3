"""The built-in team: six generalists that cover most requests out of the box.

Each has a few ``examples`` of its typical tasks: the embedding router compares a task with
them and the description (docs/routing.md); they were written apart from the labelled set
in tests/data/routing.jsonl that measures it.

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
        examples=(
            "Find background information and the key facts about a subject.",
            "Look up what is known about this question and list the main points.",
            "Gather sources, history and definitions on the topic.",
            "Investigate which rules, requirements or options exist for a situation.",
            "Find out who the main players are and what they do.",
        ),
    ),
    Worker(
        name="analyst",
        description="Compares options, weighs trade-offs, and draws conclusions from inputs.",
        system_prompt="You are an analyst. Compare the options, weigh trade-offs, and state "
        "clear conclusions with the reasons behind them." + _SHARED,
        examples=(
            "Compare the options and recommend the best one.",
            "Weigh the pros and cons and the trade-offs of each approach.",
            "Analyse the data or results and explain what they show.",
            "Evaluate the risks and decide which choice is better.",
            "Rank the alternatives by cost, benefit and risk.",
        ),
    ),
    Worker(
        name="writer",
        description="Writes clear prose (explanations, articles, emails) from notes.",
        system_prompt="You are a technical writer. Write clear, well-structured prose for the "
        "reader the instructions describe." + _SHARED,
        examples=(
            "Write an article, blog post or essay for readers.",
            "Draft an email or letter with the right tone.",
            "Turn notes or bullet points into clear, polished prose.",
            "Write a guide, announcement or web page text.",
            "Rewrite a text so it reads well.",
        ),
    ),
    Worker(
        name="coder",
        description="Writes, explains or reviews source code.",
        system_prompt="You are a senior software engineer. Write correct, idiomatic, commented "
        "code in fenced blocks, followed by a short explanation." + _SHARED,
        examples=(
            "Write a function, script or program in a programming language.",
            "Fix a bug or debug an error in the code.",
            "Review source code or a pull request for problems.",
            "Refactor, test or optimise existing code.",
            "Write a SQL query, shell script or configuration file.",
        ),
    ),
    Worker(
        name="summariser",
        description="Condenses long material into a short summary.",
        system_prompt="You are a summariser. Condense the material to its essential points in "
        "a few sentences, keeping every number and name that matters." + _SHARED,
        examples=(
            "Summarise a long document in a few sentences.",
            "Condense a transcript or notes into the key points.",
            "Give a short overview or TL;DR of the material.",
            "Shorten a report into an executive summary.",
            "Recap the main takeaways briefly.",
        ),
    ),
    Worker(
        name="fact_checker",
        description="Checks claims in a text for errors and unsupported statements.",
        system_prompt="You are a fact-checker. Check each claim in the material; list any that "
        "are wrong or unsupported, with a correction, or say that all claims hold." + _SHARED,
        examples=(
            "Check the claims in a text for accuracy.",
            "Verify that the facts, figures and quotes are correct.",
            "Flag statements that are false, misleading or unsupported.",
            "Is this claim true? Check it against the evidence.",
            "Cross-check a draft against its sources for errors.",
        ),
    ),
)

#: The built-in tools each default worker may call, when its registry's toolbox has them.
DEFAULT_TOOLS: dict[str, tuple[str, ...]] = {
    "researcher": ("read_file", "list_files", "fetch"),
    "coder": ("read_file", "list_files", "write_file", "shell"),
}
