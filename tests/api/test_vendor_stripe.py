"""A vendor's rejection refunded in full online (issue 28), against a real Stripe emulator
(`localstripe`): the order is paid by card (the return URL's verify confirms it), waits for
its vendor, and is rejected, by the vendor or by its window ending (`timeout`); either way
its refund goes through Stripe's refund API for the whole amount, the order ends `refunded`
and its stock comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from activities.fulfilment import AcceptanceWindow
from domain.statuses import FulfilmentStatus
from tests.support.localstripe import API_KEY, pay_with_card, stripe_client
from tests.support.outcomes import refund_result, stock_of
from tests.support.stack import Stack
from tests.support.vendors import confirmation, place, until_fulfilment, vendor, vendor_product

PENDING = FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE


@pytest.fixture
def stack_env(localstripe: str) -> dict[str, str]:
    # A window of one second: no keeper runs in these tests, the timeout's poll is made here.
    return {
        "PAYSAGA_STRIPE_API_KEY": API_KEY,
        "PAYSAGA_STRIPE_API_BASE": localstripe,
        "PAYSAGA_VENDOR_ACCEPT_SECONDS": "1",
    }


async def paid_by_card(stack: Stack, localstripe: str) -> tuple[dict[str, Any], str]:
    """A vendor's order that needs acceptance, paid by a test card, once it reads pending."""
    order = await place(stack, "stripe", await vendor_product(stack, "acme", currency="EUR"))
    intent_id = order["payment"]["intent_id"]
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    back = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user()
    )
    assert back.status_code in (200, 202), back.text
    pending = await until_fulfilment(stack, order["id"], PENDING)
    assert (pending["status"], pending["amount"]) == ("paid", 49900)
    assert await stock_of(stack, order) == 4
    return pending, intent_id


async def refunded_in_full(
    stack: Stack, localstripe: str, order: dict[str, Any], intent_id: str, by: str
) -> None:
    assert await refund_result(stack, "stripe", intent_id) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["fulfilment"], after["payment"]["status"]) == (
        "refunded",
        "rejected",
        "refunded",
    )
    assert (after["refund"]["status"], after["refund"]["amount"]) == ("succeeded", 49900)
    assert after["refund"]["requested_by"] == by
    refunds = await asyncio.to_thread(
        stripe_client(localstripe).v1.refunds.list, {"payment_intent": intent_id}
    )
    assert [(r.amount, r.status) for r in refunds.data] == [(49900, "succeeded")]
    assert await stock_of(stack, order) == 5
    outcome = await asyncio.wait_for(confirmation(stack, "stripe", intent_id).result(), 60)
    assert (outcome.outcome, outcome.ticket_code) == ("paid", None)


async def test_a_vendors_rejection_is_refunded_in_full_through_stripe(
    stack: Stack, localstripe: str
) -> None:
    order, intent_id = await paid_by_card(stack, localstripe)
    rejected = await stack.http.post(
        f"/vendor/orders/{order['id']}/reject", json={"reason": "sold out"}, headers=vendor()
    )
    assert rejected.status_code == 202, rejected.text
    assert rejected.json()["refund"]["status"] in ("pending", "succeeded")
    await refunded_in_full(stack, localstripe, order, intent_id, "vendor:acme")


async def test_an_unanswered_order_is_refunded_in_full_through_stripe(
    stack: Stack, localstripe: str
) -> None:
    order, intent_id = await paid_by_card(stack, localstripe)
    await asyncio.sleep(1.2)  # past its window of one second
    keeper = AcceptanceWindow(stack.sessions, stack.client, stack.task_queue)
    await keeper.close_due()  # the keeper's poll (its own, if it runs, may come first)
    await keeper.drain()
    assert (await until_fulfilment(stack, order["id"], "rejected"))["reject_reason"] == "timeout"
    await refunded_in_full(stack, localstripe, order, intent_id, "system:vendor_window")
