"""Size of the product code (issue 23): no module over 400 lines, no function over 60.

Long files and functions hide responsibilities that want a name of their own; split along
them (STYLE.md). Pure Python, no services: the modules are parsed, not imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "api",
    "workflows",
    "activities",
    "db",
    "gateways",
    "domain",
    "paysaga",
    "bench",
    "tickets",
    "mail",
    "observability",
)
# Frozen snapshots of the schema at each revision: never edited, so never split.
EXCLUDED = ("db/migrations",)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def product_modules() -> Iterator[Path]:
    yield ROOT / "worker.py"
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.relative_to(ROOT).as_posix().startswith(EXCLUDED):
                yield path


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from its first decorator to its last line, docstring and comments included."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - first + 1


def oversized() -> list[str]:
    found = []
    for path in product_modules():
        name = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for function in functions(ast.parse(source, name)):
            key = f"{name}:{function.name}"
            if length(function) > MAX_FUNCTION_LINES:
                found.append(f"{key} (line {function.lineno}): {length(function)} lines")
    return found


def test_no_module_or_function_is_too_long() -> None:
    assert oversized() == [], (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function"
    )
