"""`paysaga admin`: operators list cases, repair payments and check the invariants from a shell.

It talks to PostgreSQL and Temporal directly (PAYSAGA_DATABASE_URL, PAYSAGA_TEMPORAL_ADDRESS),
so it works when the API is down too. Exit codes: 0 done, 1 invariant violated, 2 refused.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import uuid
from typing import Any

from db.cases import list_cases
from db.invariants import check_invariants
from db.session import make_engine, make_sessionmaker
from domain.confirmation import AdminAction
from domain.payments import PROVIDERS, AdminRequest
from paysaga.settings import Settings
from paysaga.temporal import connect
from workflows.confirmation_client import ActionRefused, send_admin_action


def add_admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="operator commands for reconciliation")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    cases = commands.add_parser("cases", help="list open reconciliation cases (JSON lines)")
    cases.add_argument("--all", action="store_true", help="include resolved cases")
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
            for case in await list_cases(sessions, include_resolved=args.all):
                print(json.dumps(case))
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
        print(json.dumps(decision.view()))
        return 0
    finally:
        await engine.dispose()
