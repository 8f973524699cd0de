"""The product code's shape (issue 23): no module over 400 lines, no function over 60, and
no status written as a bare string outside `domain/`.

Long files and functions hide responsibilities that want a name of their own; split along
them (STYLE.md). A status string elsewhere is a typo waiting to ship: states are enums in
`domain.statuses`. Pure Python, no services: the modules are parsed, not imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from domain import statuses

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


# Every status value (CONTRACT "Statuses") and every webhook result. Not the cancel reasons
# (`admin` and `customer` are also roles and commands) nor `error` (a log level too).
STATUS_WORDS = frozenset(
    member.value
    for enum in (
        statuses.OrderStatus,
        statuses.PaymentStatus,
        statuses.RefundStatus,
        statuses.CaseState,
        statuses.FulfilmentStatus,
        statuses.NotificationStatus,
        statuses.WebhookResult,
    )
    for member in enum
    if member is not statuses.WebhookResult.ERROR
)
# Where a status may be a string: the enums themselves, and the gateways, which speak their
# gateway's own vocabulary (Stripe's `succeeded` intent is Stripe's word, not our state).
STATUS_HOMES = ("domain/", "gateways/")


def status_literals(tree: ast.AST) -> Iterator[ast.Constant]:
    """String constants that are exactly a status; a dict key (`{"timeout": 5}`), a docstring
    and text that merely contains one (SQL, messages) are not."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            skip |= {id(k) for k in node.keys if k is not None}
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in STATUS_WORDS
            and id(node) not in skip
        ):
            yield node


def test_no_status_is_a_bare_string() -> None:
    found = []
    for path in product_modules():
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(STATUS_HOMES):
            continue
        tree = ast.parse(path.read_text(), name)
        found += [f"{name}:{c.lineno}: {c.value!r}" for c in status_literals(tree)]
    assert found == [], "use the enum in domain.statuses:\n" + "\n".join(found)


def test_the_status_check_can_fail() -> None:
    tree = ast.parse(
        'if order.status == "paid":\n    x = {"timeout": 5}\n"""cancelled"""\n'
        'sql = "WHERE status = \'paid\'"\nanswer = Literal["accepted"]\n'
    )
    assert [c.value for c in status_literals(tree)] == ["paid", "accepted"]
