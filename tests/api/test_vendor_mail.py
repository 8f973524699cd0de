"""The payer's mail for an order that waits for its vendor (issue 28), on the real stack with a
real SMTP server: no ticket mail while the vendor has not answered; the ticket once accepted;
once rejected (by the vendor, or its window), a mail that the money is coming back, then the
refund's own mail when it is done."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from activities.fulfilment import AcceptanceWindow
from paysaga.devstack import free_port
from tests.support.gateway_events import refund_notice
from tests.support.inbox import Inbox, mail_env, serving
from tests.support.outcomes import refund_result
from tests.support.stack import Stack
from tests.support.vendors import paid_vendor_order, until_fulfilment, vendor

SMTP_PORT = free_port()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with serving(SMTP_PORT) as handler:
        yield handler


@pytest.fixture
def stack_env() -> dict[str, str]:
    # A window of three seconds: long enough to answer first, short enough to end in the test.
    return mail_env(SMTP_PORT, "PyCon Test 2026", PAYSAGA_VENDOR_ACCEPT_SECONDS="3")


def attendee() -> dict[str, str]:
    return {"name": "Ada", "email": f"{uuid.uuid4().hex[:8]}@mail.pycon-attendees.org"}


async def test_the_ticket_is_mailed_once_accepted(stack: Stack, inbox: Inbox) -> None:
    order, _ = await paid_vendor_order(stack, "standard", attendee=attendee())
    await asyncio.sleep(1.0)  # the feed has long passed OrderPaid by now
    assert inbox.to_order(order["id"]) == []  # no ticket while the vendor has not answered
    accepted = await stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
    assert accepted.status_code == 200
    mail = await inbox.wait_for(order["id"], "payment_confirmed")
    assert mail["To"].endswith("@mail.pycon-attendees.org")
    assert [m["X-Paysaga-Notification"] for m in inbox.to_order(order["id"])] == [
        "payment_confirmed"
    ]


async def test_a_rejection_tells_the_payer_and_then_the_refund(stack: Stack, inbox: Inbox) -> None:
    order, tx = await paid_vendor_order(stack, "standard", attendee=attendee())
    rejected = await stack.http.post(
        f"/vendor/orders/{order['id']}/reject", json={"reason": "closed"}, headers=vendor()
    )
    assert rejected.status_code == 202
    told = await inbox.wait_for(order["id"], "vendor_rejected")
    text = told.get_body(preferencelist=("plain",))
    assert text is not None and "refunded to you in full" in text.get_content()
    assert "could not accept it" in text.get_content()
    notice = refund_notice("standard", order, tx)
    assert (await stack.post("/webhooks/standard", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "standard", tx) == "succeeded"
    await inbox.wait_for(order["id"], "refund_done")
    kinds = [m["X-Paysaga-Notification"] for m in inbox.to_order(order["id"])]
    assert kinds == ["vendor_rejected", "refund_done"]


async def test_a_window_that_ends_says_the_seller_did_not_confirm_in_time(
    stack: Stack, inbox: Inbox
) -> None:
    order, _ = await paid_vendor_order(stack, "razorpay", attendee=attendee())
    await asyncio.sleep(3.2)
    keeper = AcceptanceWindow(stack.sessions, stack.client, stack.task_queue)
    await keeper.close_due()  # the keeper's poll (its own, if it runs, may come first)
    await keeper.drain()
    await until_fulfilment(stack, order["id"], "rejected")
    told = await inbox.wait_for(order["id"], "vendor_rejected")
    text = told.get_body(preferencelist=("plain",))
    assert text is not None and "did not confirm it in time" in text.get_content()
