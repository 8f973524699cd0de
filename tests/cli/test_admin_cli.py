"""`paysaga admin cases` and `paysaga admin show` against the real stack: the arguments go
through the parser `paysaga.cli` builds, then `run_admin` runs in-process."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import undefer

from db.models import AuditEntry, Notification, Order, Ticket
from domain.payments import confirmation_workflow_id
from paysaga import cli
from paysaga.admin_cli import NOT_FOUND, run_admin
from paysaga.admin_render import clean
from paysaga.settings import Settings
from tests.support.gateway_events import signed_confirmation
from tests.support.outcomes import count
from tests.support.signing import razorpay_payment_event, razorpay_request
from tests.support.stack import Stack

UNREACHABLE = "127.0.0.1:1"


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse(argv: list[str]) -> argparse.Namespace:
    """The namespace `paysaga.cli.main` would act on: its own parser, stopped right after
    parsing (before it configures logging or reads the environment)."""
    original = argparse.ArgumentParser.parse_args

    def grab(
        self: argparse.ArgumentParser,
        args: list[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> argparse.Namespace:
        raise _Parsed(original(self, args, namespace))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", grab)
        with pytest.raises(_Parsed) as parsed:
            cli.main(argv)
    return parsed.value.namespace


def cli_settings(stack: Stack, temporal_address: str | None = None) -> Settings:
    """The stack's settings with the test Temporal server's real address (the stack's own
    client does not go through `PAYSAGA_TEMPORAL_ADDRESS`)."""
    address = temporal_address or stack.client.service_client.config.target_host
    return stack.settings.model_copy(update={"temporal_address": address})


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.out)
        return value


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour codes in captured output, whatever the shell running the tests asks for."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


async def admin(
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    temporal_address: str | None = None,
) -> Run:
    args = parse(["admin", *argv])
    capsys.readouterr()
    code = await run_admin(cli_settings(stack, temporal_address), args)
    out, err = capsys.readouterr()
    return Run(code, out, err)


async def unmatched(stack: Stack, amount: int = 1234) -> str:
    """Money for an intent no order has: a parked workflow and an open `unmatched` case."""
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    event = razorpay_payment_event(f"order_{uuid.uuid4().hex[:10]}", tx, amount)
    assert (await stack.post("/webhooks/razorpay", razorpay_request(event))).json() == {
        "result": "accepted"
    }
    await stack.wait_state(confirmation_workflow_id("razorpay", tx), "unmatched")
    return tx


async def short_paid(stack: Stack) -> tuple[str, dict[str, Any]]:
    """An order paid with the wrong amount: an open `amount_mismatch` case naming the order."""
    order = await stack.place_order("razorpay", amount=49900)
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, 100)
    await stack.post("/webhooks/razorpay", razorpay_request(event))
    await stack.wait_state(confirmation_workflow_id("razorpay", tx), "amount_mismatch")
    return tx, order


async def paid(stack: Stack) -> tuple[str, dict[str, Any]]:
    order = await stack.place_order("razorpay", amount=49900)
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, order["amount"])
    await stack.post("/webhooks/razorpay", razorpay_request(event))
    outcome = await stack.result(confirmation_workflow_id("razorpay", tx))
    assert outcome.outcome == "paid"
    return tx, await stack.order(order["id"])


def test_control_characters_are_escaped_not_printed() -> None:
    assert clean("pay_\x1b[2Jx") == "pay_\\x1b[2Jx"
    assert clean("plain [bold]text[/]") == "plain [bold]text[/]"


async def test_cases_table_json_and_resolved(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = await admin(stack, capsys, "cases")
    assert (empty.code, empty.out.strip()) == (0, "No open cases.")
    assert (await admin(stack, capsys, "cases", "--json")).out == ""

    orphan = await unmatched(stack, amount=1234)
    short, order = await short_paid(stack)

    table = await admin(stack, capsys, "cases")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    orphan_row = next(line for line in lines if orphan in line)
    short_row = next(line for line in lines if short in line)
    assert "unmatched" in orphan_row and "INR 12.34" in orphan_row and "open" in orphan_row
    assert re.search(r"\d+[smhd] ago \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", orphan_row)
    assert "amount_mismatch" in short_row and "INR 1.00" in short_row
    assert order["id"][:8] in short_row
    assert lines[-1] == "2 open cases: amount_mismatch 1, unmatched 1"
    assert all(len(line) <= 160 for line in lines)

    # --json is what it always was: one object per line, as the API lists them.
    scripted = await admin(stack, capsys, "cases", "--json")
    api = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [json.loads(line) for line in scripted.out.splitlines()] == api
    assert [c["transaction_id"] for c in api] == [orphan, short]

    resolved = await admin(
        stack, capsys, "resolve", "razorpay", orphan, "--note", "refunded by hand", "--as", "dana"
    )
    assert resolved.code == 0, resolved.err
    assert json.loads(resolved.out)["status"] == "accepted"
    workflow_id = confirmation_workflow_id("razorpay", orphan)
    assert (await stack.result(workflow_id)).outcome == "resolved"

    still_open = await admin(stack, capsys, "cases")
    assert orphan not in still_open.out and short in still_open.out
    assert still_open.out.splitlines()[-1] == "1 open case: amount_mismatch 1"
    everything = await admin(stack, capsys, "cases", "--all")
    assert orphan in everything.out and short in everything.out
    assert "resolved" in next(line for line in everything.out.splitlines() if orphan in line)
    assert everything.out.splitlines()[-1] == "2 cases (1 open): amount_mismatch 1, unmatched 1"
    all_json = await admin(stack, capsys, "cases", "--all", "--json")
    history = (
        await stack.http.get("/admin/reconciliation?include_resolved=true", headers=stack.admin)
    ).json()
    assert [json.loads(line) for line in all_json.out.splitlines()] == history

    await admin(stack, capsys, "resolve", "razorpay", short, "--note", "settled")
    await stack.result(confirmation_workflow_id("razorpay", short))


async def test_show_a_paid_payment(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    tx, order = await paid(stack)

    shown = await admin(stack, capsys, "show", "razorpay", tx, "--json")

    assert shown.code == 0, shown.err
    view = shown.json()
    assert (view["provider"], view["transaction_id"]) == ("razorpay", tx)
    payment = view["payment"]
    assert (payment["status"], payment["amount"], payment["currency"]) == ("paid", 49900, "INR")
    assert payment["order_id"] == order["id"]
    assert payment["intent_id"] == order["payment"]["intent_id"]
    assert payment["confirmed_at"] is not None
    assert view["order"] == order  # the same view as GET /orders/{id}
    assert view["cases"] == []
    workflow = view["workflow"]
    assert (workflow["id"], workflow["status"]) == (f"payment-razorpay-{tx}", "completed")
    assert workflow["error"] is None and workflow["closed_at"] is not None
    assert workflow["state"]["outcome"] == "paid"
    assert workflow["state"]["order_id"] == order["id"]
    assert workflow["state"]["ticket_code"] == order["ticket"]["code"]

    table = await admin(stack, capsys, "show", "razorpay", tx)
    assert table.code == 0, table.err
    out = table.out
    for expected in (
        f"Payment #{payment['id']}",
        f"Order {order['id']}",
        f"Workflow payment-razorpay-{tx}",
        "INR 499.00",
        order["payment"]["intent_id"],
        order["ticket"]["code"],
        "Cases: none.",
        "completed",
    ):
        assert expected in out, expected
    assert all(len(line) <= 160 for line in out.splitlines())


async def test_show_a_case_without_a_payment(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = await unmatched(stack, amount=1234)
    short, order = await short_paid(stack)

    view = (await admin(stack, capsys, "show", "razorpay", orphan, "--json")).json()
    assert view["payment"] is None and view["order"] is None
    assert [(c["kind"], c["state"], c["amount"]) for c in view["cases"]] == [
        ("unmatched", "open", 1234)
    ]
    assert view["workflow"]["status"] == "running"
    assert view["workflow"]["state"]["state"] == "unmatched"
    assert view["workflow"]["state"]["parked_as"] == "unmatched"

    # The short payment was never stored; its order comes from the case that names it.
    mismatch = (await admin(stack, capsys, "show", "razorpay", short, "--json")).json()
    assert mismatch["payment"] is None
    assert mismatch["order"]["id"] == order["id"]
    assert mismatch["order"]["status"] == "awaiting_payment"
    assert [c["kind"] for c in mismatch["cases"]] == ["amount_mismatch"]

    table = await admin(stack, capsys, "show", "razorpay", orphan)
    assert table.code == 0, table.err
    for expected in ("Payment: none stored", "Cases (1)", "unmatched", "INR 12.34", "running"):
        assert expected in table.out, expected

    # Temporal down: the database's side is still shown, and the workflow's is said missing.
    offline = await admin(
        stack, capsys, "show", "razorpay", orphan, "--json", temporal_address=UNREACHABLE
    )
    assert offline.code == 0, offline.err
    assert offline.json()["cases"] == view["cases"]
    assert offline.json()["workflow"]["status"] == "unreachable"
    assert UNREACHABLE in offline.json()["workflow"]["error"]
    offline_table = await admin(
        stack, capsys, "show", "razorpay", orphan, temporal_address=UNREACHABLE
    )
    assert "unreachable" in offline_table.out and "INR 12.34" in offline_table.out

    for tx in (orphan, short):
        await admin(stack, capsys, "resolve", "razorpay", tx, "--note", "settled")
        await stack.result(confirmation_workflow_id("razorpay", tx))
    resolved = (await admin(stack, capsys, "show", "razorpay", orphan, "--json")).json()
    assert [c["state"] for c in resolved["cases"]] == ["resolved"]
    assert resolved["workflow"]["status"] == "completed"
    assert resolved["workflow"]["state"]["outcome"] == "resolved"


async def test_show_an_unknown_payment_exits_3(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ([], ["--json"]):
        missing = await admin(stack, capsys, "show", "razorpay", "pay_nobody", *extra)
        assert missing.code == NOT_FOUND == 3
        assert missing.out == ""
        assert "not found" in missing.err and "pay_nobody" in missing.err

    offline = await admin(
        stack, capsys, "show", "stripe", "pi_nobody", temporal_address=UNREACHABLE
    )
    assert offline.code == 3 and "Temporal was not checked" in offline.err

    with pytest.raises(SystemExit):  # argparse: an unknown provider is a usage error
        parse(["admin", "show", "paypal", "pay_nobody"])

    # The real command: `paysaga.cli` exits with the code `run_admin` returns.
    env = os.environ | {
        "PAYSAGA_DATABASE_URL": stack.settings.require_database_url(),
        "PAYSAGA_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "paysaga.cli", "admin", "show", "razorpay", "pay_nobody"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "not found" in done.stderr and done.stdout == ""


async def attendee_order(stack: Stack, name: str, paid: bool) -> dict[str, Any]:
    sku = f"SHRED-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Pass", "unit_amount": 700, "currency": "EUR", "stock": 2}
    assert (await stack.http.post("/admin/products", json=product, headers=stack.admin)).is_success
    body = {
        "items": [{"sku": sku, "quantity": 1}],
        "provider": "standard",
        "attendee": {"name": name, "email": f"{name.lower()}@attendees.example.org"},
    }
    order: dict[str, Any] = (
        await stack.http.post("/orders", json=body, headers=stack.user())
    ).json()
    if paid:
        tx = f"txn_{uuid.uuid4().hex[:14]}"
        await stack.post("/webhooks/standard", signed_confirmation("standard", order, tx))
        await stack.result(confirmation_workflow_id("standard", tx))
        ticket = await stack.http.get(f"/orders/{order['id']}/ticket", headers=stack.user())
        assert ticket.status_code == 200  # its PDF is stored now
    else:
        cancel = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
        assert cancel.status_code == 200
    return order


async def test_shred_removes_personal_data_of_orders_that_ended_long_ago(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    old_paid = await attendee_order(stack, "Ada", paid=True)
    old_cancelled = await attendee_order(stack, "Bea", paid=False)
    recent = await attendee_order(stack, "Cy", paid=True)
    async with stack.sessions.begin() as s:
        past = func.now() - timedelta(days=40)
        await s.execute(update(Order).where(Order.id == old_paid["id"]).values(paid_at=past))
        await s.execute(
            update(Order)
            .where(Order.id == old_cancelled["id"])
            .values(cancelled_at=past, updated_at=past)
        )
        s.add_all(
            Notification(
                dedupe_key=f"ticket:{o['id']}",
                kind="ticket",
                order_id=o["id"],
                recipient=o["attendee"]["email"],
                message_id=f"<{uuid.uuid4()}@paysaga>",
            )
            for o in (old_paid, recent)
        )
    before = {o["id"]: await stack.order(o["id"]) for o in (old_paid, old_cancelled, recent)}
    audit_before = await count(stack.sessions, AuditEntry)

    done = await admin(stack, capsys, "shred", "--older-than", "30")
    assert done.code == 0, done.err
    assert done.json() == {"older_than_days": 30, "orders": 2, "tickets": 1, "mails": 1}
    again = await admin(stack, capsys, "shred", "--older-than", "30")
    assert again.json() == {"older_than_days": 30, "orders": 0, "tickets": 0, "mails": 0}

    async with stack.sessions() as s:
        rows = {str(o.id): o for o in await s.scalars(select(Order).options(undefer("*")))}
        pdfs = dict((await s.execute(select(Ticket.order_id, Ticket.pdf))).all())
        recipients = dict(
            (await s.execute(select(Notification.order_id, Notification.recipient))).all()
        )
    for shredded in (old_paid, old_cancelled):
        row = rows[shredded["id"]]
        assert (row.attendee_name, row.attendee_email) == (None, None)
        after = await stack.order(shredded["id"])
        kept = before[shredded["id"]]
        # The books are untouched: amounts, statuses, payments, ticket code.
        assert {k: v for k, v in after.items() if k != "attendee"} == {
            k: v for k, v in kept.items() if k != "attendee"
        }
    assert pdfs[uuid.UUID(old_paid["id"])] is None and pdfs[uuid.UUID(recent["id"])] is not None
    assert recipients == {
        uuid.UUID(old_paid["id"]): "[shredded]",
        uuid.UUID(recent["id"]): "cy@attendees.example.org",
    }
    assert rows[recent["id"]].attendee_name == "Cy"
    assert await count(stack.sessions, AuditEntry) == audit_before
    assert (await admin(stack, capsys, "check")).code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse: a usage error
        parse(["admin", "shred", "--older-than", "0"])
    assert "at least 1 day" in capsys.readouterr().err
