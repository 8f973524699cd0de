"""Mail as an outbox, on the real stack with a real SMTP server (aiosmtpd): a recipient that is
never accepted delays nobody else and is given up at its limit, escalated once; an address
the server cannot take fails at once; every outcome is told once, with the amount, the order
and what happens next; parked money escalates to the admins once it is old enough."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from activities.reconciliation import ReconcileInput
from db.models import Escalation, Notification, Refund
from domain.money import format_money
from domain.payments import confirmation_workflow_id
from paysaga.devstack import free_port
from tests.support.gateway_events import refund_notice, signed_confirmation, transaction_of
from tests.support.inbox import Inbox, mail_env, serving
from tests.support.outcomes import count, refund_result
from tests.support.stack import Stack
from workflows.reconciliation import ReconcileWorkflow

SMTP_PORT = free_port()
ADMIN = "ops@pycon.test"
GIVE_UP_SECONDS = 6


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    # Without SMTPUTF8, as many servers are: a non-ASCII address cannot be delivered there.
    with serving(SMTP_PORT, smtputf8=False) as handler:
        yield handler


@pytest.fixture
def stack_env() -> dict[str, str]:
    return mail_env(
        SMTP_PORT,
        "PyCon Test 2026",
        PAYSAGA_ADMIN_EMAIL=ADMIN,
        PAYSAGA_MAIL_GIVE_UP_SECONDS=str(GIVE_UP_SECONDS),
    )


def attendee(address: str | None = None) -> dict[str, str]:
    return {"name": "Ada", "email": address or f"{uuid.uuid4().hex[:8]}@mail.pycon-attendees.org"}


async def paid(stack: Stack, order: dict[str, Any], amount: int | None = None) -> str:
    tx = transaction_of("standard", order, f"tx_{uuid.uuid4().hex[:12]}")
    answer = await stack.post(
        "/webhooks/standard", signed_confirmation("standard", order, tx, amount)
    )
    assert answer.json() == {"result": "accepted"}, answer.text
    return tx


async def note_of(stack: Stack, recipient: str, status: str, seconds: float = 40) -> Notification:
    for _ in range(int(seconds * 10)):
        async with stack.sessions() as s:
            note = await s.scalar(
                select(Notification).where(
                    Notification.recipient == recipient, Notification.status == status
                )
            )
        if note is not None:
            return note
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {status} mail to {recipient}")


async def escalations_to_admin(inbox: Inbox, count: int, seconds: float = 30) -> list[str]:
    for _ in range(int(seconds * 10)):
        found = [m for m in inbox.of_kind("escalation") if m["To"] == ADMIN]
        if len(found) >= count:
            return [f"{m['Subject']}\n{body(m)}" for m in found]
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} escalations: {inbox.of_kind('escalation')}")


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def test_a_recipient_never_accepted_delays_nobody_and_is_given_up_escalated_once(
    stack: Stack, inbox: Inbox
) -> None:
    blocked = "full@mail.pycon-attendees.org"
    inbox.deferred.add(blocked)
    first = await stack.place_order("standard", attendee=attendee(blocked))
    await paid(stack, first)
    for _ in range(100):
        if inbox.deferrals:
            break
        await asyncio.sleep(0.1)
    assert inbox.deferrals >= 1  # its ticket mail is being deferred

    later = [await stack.place_order("standard", attendee=attendee()) for _ in range(20)]
    for order in later:
        await paid(stack, order)
    last_paid = time.monotonic()
    for order in later:
        await inbox.wait_for(order["id"], "payment_confirmed", seconds=30)
    # Behind a recipient that is deferred all along, the 20 later tickets all went out.
    print(
        f"20 later tickets mailed within {max(inbox.arrived) - last_paid:.2f} s of the last payment"
    )
    assert max(inbox.arrived) - last_paid < 20

    given_up = await note_of(stack, blocked, "failed")
    assert given_up.kind == "payment_confirmed" and given_up.attempts >= 2
    assert "deferred for" in (given_up.last_error or "")
    (alarm,) = await escalations_to_admin(inbox, 1)
    assert alarm.startswith("[paysaga] mail_failed: action needed")
    assert f"paysaga admin resend-mail {given_up.id}" in alarm
    assert "payment_confirmed mail" in alarm and first["id"] in alarm
    await asyncio.sleep(2)  # no second escalation for the same mail
    assert len(inbox.of_kind("escalation")) == 1
    async with stack.sessions() as s:
        kinds = list(await s.scalars(select(Escalation.kind)))
    assert kinds == ["mail_failed"]
    assert inbox.to_order(first["id"]) == []


async def test_an_address_the_server_cannot_take_fails_at_once_and_blocks_nobody(
    stack: Stack, inbox: Inbox
) -> None:
    # Accepted by the API (EmailStr), but the server offers no SMTPUTF8: no try can succeed.
    odd = await stack.place_order("standard", attendee=attendee("josé@example.com"))
    gone = "left@mail.pycon-attendees.org"
    inbox.rejected.add(gone)  # 550: no such user
    dead = await stack.place_order("standard", attendee=attendee(gone))
    plain = await stack.place_order("standard", attendee=attendee())
    for order in (odd, dead, plain):
        cancelled = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
        assert cancelled.status_code == 200
    await inbox.wait_for(plain["id"], "order_cancelled", seconds=30)
    refused = await note_of(stack, "josé@example.com", "failed", seconds=10)
    assert refused.attempts == 1 and "cannot take this address" in (refused.last_error or "")
    unknown = await note_of(stack, gone, "failed", seconds=10)
    assert unknown.attempts == 1 and "550" in (unknown.last_error or "")
    assert "@" not in (unknown.last_error or "")  # the address the server quoted is not kept
    alarms = await escalations_to_admin(inbox, 2)
    assert any(f"paysaga admin resend-mail {refused.id}" in a for a in alarms)
    assert any(f"paysaga admin resend-mail {unknown.id}" in a for a in alarms)
    assert not any(gone in a for a in alarms)


async def test_every_outcome_is_told_once_with_amount_order_and_what_next(
    stack: Stack, inbox: Inbox
) -> None:
    total = format_money(49900, "INR")
    mine = await stack.place_order("standard", attendee=attendee())
    theirs = await stack.place_order("standard", attendee=attendee())
    assert (
        await stack.http.post(f"/orders/{mine['id']}/cancel", headers=stack.user())
    ).status_code == 200
    assert (
        await stack.http.post(f"/orders/{theirs['id']}/cancel", headers=stack.admin)
    ).status_code == 200
    told = body(await inbox.wait_for(mine["id"], "order_cancelled"))
    assert "as you asked" in told and total in told and "No money was taken" in told
    told = body(await inbox.wait_for(theirs["id"], "order_cancelled"))
    assert "the organiser cancelled" in told and total in told and "place a new order" in told

    # Money after the cancel: refunded by itself, and the payer is told so.
    late_tx = await paid(stack, mine)
    told = body(await inbox.wait_for(mine["id"], "money_not_applied"))
    assert f"payment of {total}" in told and "refunded to you in full" in told

    # A wrong amount, and a second payment of a paid order: an operator will contact them.
    short = await stack.place_order("standard", attendee=attendee())
    await paid(stack, short, amount=100)
    told = body(await inbox.wait_for(short["id"], "money_not_applied"))
    assert format_money(100, "INR") in told and f"costs {total}" in told
    assert "operator will contact you" in told
    twice = await stack.place_order("standard", attendee=attendee())
    tx = await paid(stack, twice)
    assert (await stack.result(confirmation_workflow_id("standard", tx))).outcome == "paid"
    await paid(stack, twice)
    told = body(await inbox.wait_for(twice["id"], "money_not_applied"))
    assert "already paid" in told and "refund it" in told

    # A refund that fails: a plain note to the payer; one that succeeds: the refund mail.
    asked = await stack.http.post(f"/orders/{twice['id']}/refund", headers=stack.admin)
    assert asked.status_code == 202
    failed = refund_notice("standard", twice, tx, status="failed")
    assert (await stack.post("/webhooks/standard", failed)).json() == {"result": "accepted"}
    assert await refund_result(stack, "standard", tx) == "failed"
    told = body(await inbox.wait_for(twice["id"], "refund_failed"))
    assert total in told and "Our team has been told" in told
    await stack.http.post(f"/orders/{twice['id']}/refund", headers=stack.admin)
    done = refund_notice("standard", twice, tx)
    assert (await stack.post("/webhooks/standard", done)).json() == {"result": "accepted"}
    told = body(await inbox.wait_for(twice["id"], "refund_done"))
    assert f"we refunded {total}" in told and "it can take a few" in told
    # The refund mail follows the ticket, never before it.
    kinds = [m["X-Paysaga-Notification"] for m in inbox.to_order(twice["id"])]
    assert kinds.index("payment_confirmed") < kinds.index("refund_done")

    await asyncio.sleep(1.5)  # a second mail for any of them has had its chance
    for order in (mine, theirs, short, twice):
        kinds = [m["X-Paysaga-Notification"] for m in inbox.to_order(order["id"])]
        assert len(kinds) == len(set(kinds)), kinds
    # The late money's refund was asked for by itself, as its mail said.
    assert await count(stack.sessions, Refund, Refund.transaction_id == late_tx) == 1


async def sweep(stack: Stack, alert_seconds: int) -> int:
    report = await stack.client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(stack.task_queue, unmatched_alert_seconds=alert_seconds),
        id=f"reconcile-{uuid.uuid4()}",
        task_queue=stack.task_queue,
    )
    return report.escalated


async def test_parked_money_and_a_failed_refund_escalate_once_each(
    stack: Stack, inbox: Inbox
) -> None:
    short = await stack.place_order("standard", attendee=attendee())
    tx = await paid(stack, short, amount=100)
    await inbox.wait_for(short["id"], "money_not_applied")
    assert await sweep(stack, alert_seconds=3600) == 0  # too young to call a person
    await asyncio.sleep(1.2)
    assert await sweep(stack, alert_seconds=1) == 1
    assert await sweep(stack, alert_seconds=1) == 0  # once
    (alarm,) = await escalations_to_admin(inbox, 1)
    assert alarm.startswith("[paysaga] money_parked") and "amount_mismatch" in alarm
    assert f"standard {tx}" in alarm
    assert f"paysaga admin show standard {tx}" in alarm
    assert f"paysaga admin refund standard {tx} --reason" in alarm

    order = await stack.place_order("standard", attendee=attendee())
    paid_tx = await paid(stack, order)
    assert (await stack.result(confirmation_workflow_id("standard", paid_tx))).outcome == "paid"
    await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)
    failed = refund_notice("standard", order, paid_tx, status="failed")
    assert (await stack.post("/webhooks/standard", failed)).json() == {"result": "accepted"}
    assert await refund_result(stack, "standard", paid_tx) == "failed"
    assert await sweep(stack, alert_seconds=3600) == 1  # a failed refund: at once
    alarms = await escalations_to_admin(inbox, 2)
    assert any(f"paysaga admin refund standard {paid_tx} --reason" in a for a in alarms)
    assert any(a.startswith("[paysaga] refund_failed") for a in alarms)
    assert await sweep(stack, alert_seconds=3600) == 0
    await asyncio.sleep(1)
    assert len(inbox.of_kind("escalation")) == 2
