"""`paysaga admin`: operators list cases, look at one payment, repair payments and check the
invariants from a shell.

It talks to PostgreSQL and Temporal directly (PAYSAGA_DATABASE_URL, PAYSAGA_TEMPORAL_ADDRESS),
so it works when the API is down too. `cases` and `show` print tables for people, and with
`--json` the same information for scripts: `cases --json` one case per line, `show --json`
one object. Exit codes: 0 done, 1 invariant violated, 2 refused, 3 not found (`show`: no
payment, case or confirmation workflow has that provider and transaction id).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from db.cases import list_cases, payment_details
from db.invariants import check_invariants
from db.session import make_engine, make_sessionmaker
from domain.confirmation import AdminAction
from domain.money import format_money
from domain.payments import PROVIDERS, AdminRequest, confirmation_workflow_id
from paysaga.settings import Settings
from paysaga.temporal import connect
from workflows.confirmation_client import ActionRefused, send_admin_action
from workflows.payment_confirmation import ConfirmPaymentWorkflow

NOT_FOUND = 3
# `show` reports Temporal's side when it answers within this, and says so when it does not.
TEMPORAL_WAIT_SECONDS = 3.0
TEMPORAL_RPC_TIMEOUT = timedelta(seconds=5)
# Tables printed to a pipe or file: wide enough that no column is cut.
PIPE_WIDTH = 160


def add_admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="operator commands for reconciliation")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    cases = commands.add_parser(
        "cases", help="list open reconciliation cases (a table; --json: JSON lines)"
    )
    cases.add_argument("--all", action="store_true", help="include resolved cases")
    cases.add_argument("--json", action="store_true", help="one JSON object per case and line")
    show = commands.add_parser(
        "show",
        help="one payment: its row, order, cases and confirmation workflow; exit 3 if unknown",
    )
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("transaction_id")
    show.add_argument("--json", action="store_true", help="one JSON object")
    commands.add_parser("check", help="verify the financial invariants; exit 1 on a violation")
    for action in AdminAction:
        cmd = commands.add_parser(action, help=f"ask a payment's workflow to {action}")
        cmd.add_argument("provider", choices=PROVIDERS)
        cmd.add_argument("transaction_id")
        if action == "attach":
            cmd.add_argument("order_id")
        if action == "refund":
            cmd.add_argument("--reason", required=True)
        if action == "resolve":
            cmd.add_argument("--note", required=True)
        cmd.add_argument("--request-id", help="repeat a request safely: it acts once")
        cmd.add_argument("--as", dest="operator", help="your name in the audit trail")


async def run_admin(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.require_database_url(), pool_size=2)
    sessions = make_sessionmaker(engine)
    try:
        if args.admin_command == "cases":
            cases = await list_cases(sessions, include_resolved=args.all)
            if args.json:
                for case in cases:
                    print(json.dumps(case))
            else:
                _emit(_cases_report(cases, include_resolved=args.all))
            return 0
        if args.admin_command == "show":
            return await _show(settings, sessions, args.provider, args.transaction_id, args.json)
        client = await connect(settings, wait_seconds=10)
        if args.admin_command == "check":
            violations = await check_invariants(sessions, client, settings.task_queue)
            for violation in violations:
                print(violation)
            print(f"{len(violations)} violation(s)", file=sys.stderr)
            return 1 if violations else 0
        operator = args.operator or os.environ.get("USER") or getpass.getuser()
        request = AdminRequest(
            request_id=args.request_id or str(uuid.uuid4()),
            admin=f"cli:{operator}",
            order_id=getattr(args, "order_id", None),
            note=getattr(args, "note", None),
            reason=getattr(args, "reason", None),
        )
        try:
            decision = await send_admin_action(
                client, args.provider, args.transaction_id, args.admin_command, request
            )
        except ActionRefused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(decision.view()))
        return 0
    finally:
        await engine.dispose()


# --- show ---------------------------------------------------------------------------------


async def _show(
    settings: Settings, sessions: Any, provider: str, transaction_id: str, as_json: bool
) -> int:
    details = await payment_details(sessions, provider, transaction_id)
    workflow = await workflow_view(settings, confirmation_workflow_id(provider, transaction_id))
    # A workflow alone counts: money stuck before its payment row was stored (4a) shows there.
    known = workflow["status"] not in ("not_found", "unreachable")
    found = details["payment"] or details["cases"] or known
    if not found:
        unchecked = (
            f"; Temporal was not checked ({workflow['error']})"
            if workflow["status"] == "unreachable"
            else ""
        )
        print(
            _clean(
                f"not found: no payment, case or workflow {workflow['id']} for {provider} "
                f"{transaction_id}{unchecked}"
            ),
            file=sys.stderr,
        )
        return NOT_FOUND
    view = {"provider": provider, "transaction_id": transaction_id, **details}
    view["workflow"] = workflow
    if as_json:
        print(json.dumps(view))
    else:
        _emit(_show_report(view))
    return 0


async def workflow_view(settings: Settings, workflow_id: str) -> dict[str, Any]:
    """The confirmation workflow as Temporal has it: `status` is the execution status in
    lower case (`running`, `completed`, ...), `not_found`, or `unreachable` (Temporal did not
    answer in time); `state` is its `state` query's answer when it gave one, else `error`."""
    view: dict[str, Any] = {
        "id": workflow_id,
        "status": "unreachable",
        "started_at": None,
        "closed_at": None,
        "state": None,
        "error": None,
    }
    try:
        client = await asyncio.wait_for(
            connect(settings, wait_seconds=TEMPORAL_WAIT_SECONDS), TEMPORAL_WAIT_SECONDS + 2
        )
    except (RuntimeError, TimeoutError) as exc:
        view["error"] = f"Temporal at {settings.temporal_address} unreachable: {_reason(exc)}"
        return view
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe(rpc_timeout=TEMPORAL_RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            view["status"] = "not_found"
        else:
            view["error"] = f"Temporal did not describe {workflow_id}: {_reason(exc)}"
        return view
    view["status"] = description.status.name.lower() if description.status else "unknown"
    view["started_at"] = description.start_time.isoformat()
    view["closed_at"] = description.close_time.isoformat() if description.close_time else None
    try:
        # A finished workflow answers too, from its history, as long as a worker polls.
        state = await handle.query(ConfirmPaymentWorkflow.state, rpc_timeout=TEMPORAL_RPC_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        view["error"] = f"its state query failed (is a worker running?): {_reason(exc)}"
        return view
    view["state"] = asdict(state)
    return view


def _show_report(view: dict[str, Any]) -> list[RenderableType]:
    now = datetime.now(UTC)
    out: list[RenderableType] = []
    payment, order, cases, workflow = (
        view["payment"],
        view["order"],
        view["cases"],
        view["workflow"],
    )
    out.append(Text(f"{view['provider']} {_clean(view['transaction_id'])}", style="bold"))
    if payment is None:
        out.append(Text("Payment: none stored for this transaction."))
    else:
        amount = format_money(payment["amount"], payment["currency"])
        out.append(
            _fields(
                f"Payment #{payment['id']}",
                [
                    ("status", payment["status"]),
                    ("amount", amount),
                    ("intent id", payment["intent_id"]),
                    ("order id", payment["order_id"]),
                    ("created", _when(payment["created_at"], now)),
                    ("confirmed", _when(payment["confirmed_at"], now)),
                ],
            )
        )
    if order is None:
        out.append(Text("Order: none (no stored payment or case names one)."))
    else:
        attendee = order["attendee"]
        people = (
            " ".join(
                part
                for part in (
                    attendee["name"],
                    f"<{attendee['email']}>" if attendee["email"] else "",
                )
                if part
            )
            if attendee
            else None
        )
        ticket = order["ticket"]
        attempts = ", ".join(
            f"{p['provider']} {p['intent_id']} {p['status']}" for p in order["payments"]
        )
        out.append(
            _fields(
                f"Order {order['id']}",
                [
                    ("status", order["status"]),
                    ("amount", format_money(order["amount"], order["currency"])),
                    ("customer", order["customer_id"]),
                    ("attendee", people),
                    ("created", _when(order["created_at"], now)),
                    ("expires at", _when(order["expires_at"], now)),
                    ("paid", _when(order["paid_at"], now)),
                    ("cancelled", _when(order["cancelled_at"], now)),
                    ("cancel reason", order["cancel_reason"]),
                    ("ticket", ticket["code"] if ticket else None),
                    ("attempts", attempts or None),
                ],
            )
        )
    if cases:
        out.append(_cases_table(cases, now, title=f"Cases ({len(cases)})"))
        for case in cases:
            if case["resolution"]:
                when = _when(case["resolved_at"], now)
                resolution = _clean(case["resolution"])
                out.append(Text(f"  case {case['id']} resolved {when}: {resolution}"))
    else:
        out.append(Text("Cases: none."))
    rows: list[tuple[str, object]] = [("status", workflow["status"].replace("_", " "))]
    if workflow["started_at"]:
        rows.append(("started", _when(workflow["started_at"], now)))
    if workflow["closed_at"]:
        rows.append(("closed", _when(workflow["closed_at"], now)))
    state = workflow["state"]
    if state is not None:
        rows += [
            ("state", state["state"]),
            ("phase", state["phase"]),
            ("outcome", state["outcome"]),
            ("order id", state["order_id"]),
            ("attached to", state["attach_to"]),
            ("parked as", state["parked_as"]),
            ("cases opened", ", ".join(state["cases"]) or None),
            ("failing steps", "; ".join(f"{k}: {v}" for k, v in state["stuck"].items()) or None),
            ("ticket", state["ticket_code"]),
            (
                "queued requests",
                ", ".join(
                    f"{q['action']} by {q['request']['admin']}" for q in state["pending_requests"]
                )
                or None,
            ),
            ("audit pending", len(state["pending_audit"]) or None),
            ("run", state["runs"]),
        ]
    if workflow["error"]:
        rows.append(("note", workflow["error"]))
    out.append(_fields(f"Workflow {workflow['id']}", rows))
    return out


def _fields(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(
        title=Text(_clean(title), style="bold"),
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 1, 0, 2),
    )
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(Text(name), Text("—" if value is None else _clean(str(value))))
    return table


# --- cases --------------------------------------------------------------------------------


def _cases_report(cases: list[dict[str, Any]], *, include_resolved: bool) -> list[RenderableType]:
    if not cases:
        return [Text("No cases." if include_resolved else "No open cases.")]
    out: list[RenderableType] = [_cases_table(cases, datetime.now(UTC))]
    per_kind = Counter(case["kind"] for case in cases)
    kinds = ", ".join(
        f"{kind} {n}" for kind, n in sorted(per_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    if include_resolved:
        still_open = sum(case["state"] == "open" for case in cases)
        total = f"{_plural(len(cases), 'case')} ({still_open} open)"
    else:
        total = _plural(len(cases), "open case")
    out.append(Text(f"{total}: {_clean(kinds)}"))
    return out


def _cases_table(
    cases: list[dict[str, Any]],
    now: datetime,
    *,
    title: str | None = None,
) -> Table:
    table = Table(
        title=Text(title, style="bold") if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("transaction id", overflow="fold")
    table.add_column("order", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("opened", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for case in cases:
        order_id = case["order_id"]
        table.add_row(
            Text(str(case["id"])),
            Text(_clean(case["kind"])),
            Text(_clean(case["provider"])),
            Text(_clean(case["transaction_id"])),
            Text("—" if order_id is None else order_id[:8]),
            Text(format_money(case["amount"], case["currency"])),
            Text(_when(case["opened_at"], now) or ""),
            Text(case["state"], style="green" if case["state"] == "resolved" else "yellow"),
            Text(_clean(case["reason"] or "")),
        )
    return table


# --- formatting ---------------------------------------------------------------------------


def _emit(renderables: list[RenderableType]) -> None:
    """rich fits a terminal's width; a pipe or file gets a fixed, wide one and no padding
    at the ends of lines."""
    if sys.stdout.isatty():
        console = Console(highlight=False)
        for renderable in renderables:
            console.print(renderable)
        return
    console = Console(width=PIPE_WIDTH, highlight=False)
    with console.capture() as capture:
        for renderable in renderables:
            console.print(renderable)
    lines = capture.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(iso: str | None, now: datetime) -> str | None:
    """ "3m ago (2025-01-31 09:15:02 UTC)"; a time still ahead reads "in 12m"."""
    if iso is None:
        return None
    then = datetime.fromisoformat(iso).astimezone(UTC)
    stamp = then.strftime("%Y-%m-%d %H:%M:%S UTC")
    if then > now + timedelta(seconds=1):
        return f"in {_age(now, then).removesuffix(' ago')} ({stamp})"
    return f"{_age(then, now)} ({stamp})"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _clean(value: str) -> str:
    """What a gateway sent can reach these tables: escape control characters (a terminal
    would act on them) rather than print them."""
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() or ch == "\n" else repr(ch)[1:-1] for ch in value)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
