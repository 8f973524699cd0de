"""`paysaga admin`: operators list cases, look at one payment, repair payments and check the
invariants from a shell.

It talks to PostgreSQL and Temporal directly (PAYSAGA_DATABASE_URL, PAYSAGA_TEMPORAL_ADDRESS),
so it works when the API is down too. `cases` and `show` print tables for people, and with
`--json` the same information for scripts: `cases --json` one case per line, `show --json`
one object. `shred --older-than DAYS` removes personal data of orders that ended long ago
(`db.shred`) and prints what it removed as JSON. Exit codes: 0 done, 1 invariant violated,
2 refused, 3 not found (`show`: no payment, case or confirmation workflow has that provider
and transaction id).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import os
import sys
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from db import outbox
from db.cases import list_cases, payment_details
from db.invariants import check_invariants
from db.session import make_engine, make_sessionmaker
from db.shred import shred
from domain.confirmation import AdminAction
from domain.payments import AdminRequest, confirmation_workflow_id
from domain.statuses import NotificationStatus
from domain.views import ActionAnswer, PaymentReport, View, WorkflowView
from gateways import registry
from paysaga.admin_render import cases_report, clean, emit, show_report
from paysaga.settings import Settings
from paysaga.temporal import connect
from workflows.confirmation_client import ActionRefused, send_admin_action
from workflows.payment_confirmation import ConfirmPaymentWorkflow

NOT_FOUND = 3
# `show` reports Temporal's side when it answers within this, and says so when it does not.
TEMPORAL_WAIT_SECONDS = 3.0
TEMPORAL_RPC_TIMEOUT = timedelta(seconds=5)


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
    show.add_argument("provider", choices=registry.names())
    show.add_argument("transaction_id")
    show.add_argument("--json", action="store_true", help="one JSON object")
    commands.add_parser("check", help="verify the financial invariants; exit 1 on a violation")
    shred = commands.add_parser(
        "shred",
        help="remove attendee names, addresses and ticket PDFs of orders that ended long ago",
    )
    shred.add_argument(
        "--older-than",
        type=_days,
        required=True,
        metavar="DAYS",
        help="orders cancelled, refunded or paid more than DAYS ago",
    )
    resend = commands.add_parser(
        "resend-mail", help="try a given-up mail again from now (its escalation names its id)"
    )
    resend.add_argument("mail_id", type=int)
    for action in AdminAction:
        cmd = commands.add_parser(action, help=f"ask a payment's workflow to {action}")
        cmd.add_argument("provider", choices=registry.names())
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
                    print(_json(case))
            else:
                emit(cases_report(cases, include_resolved=args.all))
            return 0
        if args.admin_command == "show":
            return await _show(settings, sessions, args.provider, args.transaction_id, args.json)
        if args.admin_command == "shred":
            async with sessions.begin() as s:
                done = await shred(s, timedelta(days=args.older_than))
            print(json.dumps({"older_than_days": args.older_than, **dataclasses.asdict(done)}))
            return 0
        if args.admin_command == "resend-mail":
            async with sessions.begin() as s:
                again = await outbox.resend(s, args.mail_id)
            if not again:
                print(f"refused: no given-up mail {args.mail_id}", file=sys.stderr)
                return 2
            print(json.dumps({"mail_id": args.mail_id, "status": NotificationStatus.PENDING}))
            return 0
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
        print(_json(ActionAnswer.of(decision)))
        return 0
    finally:
        await engine.dispose()


def _days(value: str) -> int:
    days = int(value)
    if days < 1:
        raise argparse.ArgumentTypeError("at least 1 day")
    return days


def _json(view: View) -> str:
    """The same JSON as the API's answer (and as this command always printed it)."""
    return json.dumps(view.model_dump(mode="json"))


# --- show ---------------------------------------------------------------------------------


async def _show(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    provider: str,
    transaction_id: str,
    as_json: bool,
) -> int:
    details = await payment_details(sessions, provider, transaction_id)
    workflow = await workflow_view(settings, confirmation_workflow_id(provider, transaction_id))
    # A workflow alone counts: money stuck before its payment row was stored (4a) shows there.
    known = workflow.status not in ("not_found", "unreachable")
    if not (details.payment or details.cases or known):
        unchecked = (
            f"; Temporal was not checked ({workflow.error})"
            if workflow.status == "unreachable"
            else ""
        )
        print(
            clean(
                f"not found: no payment, case or workflow {workflow.id} for {provider} "
                f"{transaction_id}{unchecked}"
            ),
            file=sys.stderr,
        )
        return NOT_FOUND
    report = PaymentReport(
        provider=provider,
        transaction_id=transaction_id,
        payment=details.payment,
        order=details.order,
        cases=details.cases,
        workflow=workflow,
    )
    if as_json:
        print(_json(report))
    else:
        emit(show_report(report))
    return 0


async def workflow_view(settings: Settings, workflow_id: str) -> WorkflowView:
    """The confirmation workflow as Temporal has it, or why it cannot be told (`error`)."""
    try:
        client = await asyncio.wait_for(
            connect(settings, wait_seconds=TEMPORAL_WAIT_SECONDS), TEMPORAL_WAIT_SECONDS + 2
        )
    except (RuntimeError, TimeoutError) as exc:
        error = f"Temporal at {settings.temporal_address} unreachable: {_reason(exc)}"
        return WorkflowView(id=workflow_id, error=error)
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe(rpc_timeout=TEMPORAL_RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return WorkflowView(id=workflow_id, status="not_found")
        error = f"Temporal did not describe {workflow_id}: {_reason(exc)}"
        return WorkflowView(id=workflow_id, error=error)
    described = WorkflowView(
        id=workflow_id,
        status=description.status.name.lower() if description.status else "unknown",
        started_at=description.start_time,
        closed_at=description.close_time,
    )
    try:
        # A finished workflow answers too, from its history, as long as a worker polls.
        state = await handle.query(ConfirmPaymentWorkflow.state, rpc_timeout=TEMPORAL_RPC_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        error = f"its state query failed (is a worker running?): {_reason(exc)}"
        return described.model_copy(update={"error": error})
    return described.model_copy(update={"state": state})


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
