"""The package's layers: records shared by engine, store and events live below all three,
and nothing imports upward. An upward import is how cycles start (and how a durable
backend ends up needing the whole CLI), so it fails here, not in review.

Imports only a type checker sees (under ``if TYPE_CHECKING:``) do not count: they create
no runtime dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "foreman"

#: Lowest first. A module may import its own part and any part on a lower line.
LAYERS = [
    {"errors", "threads"},  # threads: handing results back to the loop, for store and tools
    {"models", "embeddings"},
    {"ledger"},
    {"tools"},
    {"workers"},
    {"plan", "routing"},
    {"results"},
    {"store", "events"},
    {"tracing"},
    {"engine"},
    {"patterns"},
    {"web"},  # the dashboard; ``foreman ui`` (cli) serves it
    {"testing", "cli", "temporal"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def part_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, foreman part) of every import that runs, skipping ``if TYPE_CHECKING:``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = []
        for name in names:
            parts = name.split(".")
            if parts[0] == "foreman" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


MODULES = sorted(
    path for path in SRC.rglob("*.py") if part_of(path) not in ("__init__", "__main__")
)


def test_every_part_has_a_layer() -> None:
    parts = {part_of(path) for path in MODULES}
    assert parts <= RANK.keys(), f"give {sorted(parts - RANK.keys())} a layer in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_nothing_imports_upward(path: Path) -> None:
    own = part_of(path)
    upward = [
        f"{path.relative_to(SRC)}:{line} imports foreman.{part}"
        for line, part in runtime_imports(ast.parse(path.read_text()))
        if part != own and RANK.get(part, len(LAYERS)) >= RANK[own]
    ]
    assert not upward, upward


def test_the_cli_starts_without_the_heavy_optional_stacks() -> None:
    """Every command pays for what ``import foreman.cli`` loads: numpy (vectors), the
    embedder's runtime, MCP and the dashboard load when a run or command uses them."""
    heavy = ("numpy", "onnxruntime", "tokenizers", "mcp", "fastapi", "llama_cpp")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, foreman.cli; print([m for m in {heavy} if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC.parent)},
    ).stdout.strip()
    assert loaded == "[]"
