"""Razorpay online mode against a small server speaking Razorpay's documented API
(`tests.support.razorpay_server`; there is no Razorpay emulator), with the official `razorpay`
SDK as the client: the Razorpay order is created at checkout, the checkout return is verified, a
refund goes through the API once, a payment whose webhook never came is found before the
window closes, and a Razorpay that is down at checkout is a 503 with nothing reserved.
Stock first (issue 26 item 2): a sold-out checkout creates no Razorpay order, and a Razorpay
failing once the stock is reserved gives it back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from db.models import Order, OrderItem
from domain.payments import confirmation_workflow_id, refund_workflow_id
from tests.support.outcomes import (
    ONE_CONFIRMATION,
    assert_checkout_refused_with_nothing_reserved,
    effects,
    product_stock,
    window_outcome,
)
from tests.support.razorpay_server import RazorpayApiServer, running_razorpay
from tests.support.signing import checkout_return
from tests.support.stack import Stack

KEY_ID, KEY_SECRET = "rzp_test_paysaga", "rzp_test_secret_for_the_api"


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayApiServer]:
    yield from running_razorpay(KEY_ID, KEY_SECRET)


@pytest.fixture
def stack_env(razorpay_api: RazorpayApiServer, request: pytest.FixtureRequest) -> dict[str, str]:
    online = {
        "PAYSAGA_RAZORPAY_KEY_ID": KEY_ID,
        "PAYSAGA_RAZORPAY_KEY_SECRET": KEY_SECRET,
        "PAYSAGA_RAZORPAY_API_BASE": razorpay_api.url,
    }
    return online | getattr(request, "param", {})


async def test_checkout_return_and_refund_through_the_api(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay", amount=49900, currency="INR")
    intent = order["payment"]["intent_id"]
    created = razorpay_api.orders[intent]
    assert (created["amount"], created["currency"], created["receipt"]) == (
        49900,
        "INR",
        order["id"],
    )
    payment_id = razorpay_api.pay(intent)
    back = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id, secret=KEY_SECRET),
        headers=stack.user(),
    )
    assert back.status_code == 200 and back.json()["status"] == "paid"
    # Paid is answered once the order reads paid; the audit and the ticket follow.
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION

    calls = razorpay_api.refund_calls
    asked = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert asked.status_code == 202
    handle = stack.client.get_workflow_handle(refund_workflow_id("razorpay", payment_id))
    assert await asyncio.wait_for(handle.result(), timeout=60) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["refund"]["status"]) == ("refunded", "succeeded")
    assert razorpay_api.refund_calls == calls + 1
    assert razorpay_api.payments[payment_id]["amount_refunded"] == 49900


async def test_a_refund_asked_again_after_it_failed_is_a_new_refund(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    """Razorpay answers an idempotency key's first refund again: asking again after a refund
    failed must take a new key, or the failed refund comes back and the money never does."""
    order = await stack.place_order("razorpay", amount=49900, currency="INR")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    back = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id, secret=KEY_SECRET),
        headers=stack.user(),
    )
    assert back.status_code == 200
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    handle = stack.client.get_workflow_handle(refund_workflow_id("razorpay", payment_id))
    razorpay_api.fail_refunds = 1
    asked = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)
    assert asked.status_code == 202
    assert await asyncio.wait_for(handle.result(), timeout=60) == "failed"
    failed = await stack.order(order["id"])
    assert (failed["status"], failed["refund"]["status"]) == ("paid", "failed")
    assert razorpay_api.payments[payment_id]["amount_refunded"] == 0

    again = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)
    assert again.status_code == 202 and again.json()["refund"]["status"] == "pending"
    handle = stack.client.get_workflow_handle(refund_workflow_id("razorpay", payment_id))
    assert await asyncio.wait_for(handle.result(), timeout=60) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["refund"]["status"]) == ("refunded", "succeeded")
    assert razorpay_api.payments[payment_id]["amount_refunded"] == 49900
    ours = [r for r in razorpay_api.refunds.values() if r["payment_id"] == payment_id]
    assert sorted(r["status"] for r in ours) == ["failed", "processed"]


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_PAYMENT_WINDOW_SECONDS": "4"}], indirect=True)
async def test_a_payment_whose_webhook_never_came_is_found_before_the_window_closes(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])  # no webhook, no return
    assert await window_outcome(stack, order["id"]) == "paid"
    assert (await stack.order(order["id"]))["status"] == "paid"
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


@pytest.mark.parametrize(
    "stack_env", [{"PAYSAGA_RAZORPAY_API_BASE": "http://127.0.0.1:9"}], indirect=True
)
async def test_razorpay_down_at_checkout_is_503_with_nothing_reserved(stack: Stack) -> None:
    await assert_checkout_refused_with_nothing_reserved(stack, "razorpay")


def orders_asked(api: RazorpayApiServer) -> int:
    """Razorpay orders the API asked for, answered or not."""
    return sum(1 for method, path, _ in api.requests if (method, path) == ("POST", "/v1/orders"))


async def seat(stack: Stack, stock: int) -> str:
    return await stack.new_product(stock, "INR")


async def test_a_sold_out_checkout_leaves_no_razorpay_order_behind(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    """SEQ-BP-002: stock before any payment is initiated. Two customers race for the last
    seat: one Razorpay order is created, for the one who got it; the other gets a 409."""
    sku = await seat(stack, stock=1)
    before = orders_asked(razorpay_api)
    body = {"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"}
    answers = await asyncio.gather(
        *(stack.http.post("/orders", json=body, headers=stack.user(who)) for who in ("ann", "bo"))
    )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    won = next(a for a in answers if a.status_code == 201).json()
    assert won["payment"]["intent_id"] in razorpay_api.orders
    assert orders_asked(razorpay_api) == before + 1
    assert await product_stock(stack, sku) == 0


@pytest.mark.parametrize("after", [False, True], ids=["refused", "answer_lost"])
async def test_razorpay_failing_after_the_stock_was_reserved_gives_it_back(
    stack: Stack, razorpay_api: RazorpayApiServer, after: bool
) -> None:
    """Razorpay answers 500 to the order's creation (before making it, or after: a Razorpay
    order nobody was handed, which nobody can pay): 503, the seat is back on sale and its
    order cancelled as `checkout_failed`. The next checkout gets the seat and pays."""
    sku = await seat(stack, stock=1)
    before = orders_asked(razorpay_api)
    razorpay_api.faults.append(("/v1/orders", 500, None, after))
    body = {"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"}
    failed = await stack.http.post("/orders", json=body, headers=stack.user())
    assert failed.status_code == 503 and "nothing was reserved" in failed.json()["detail"]
    assert orders_asked(razorpay_api) == before + 1  # not retried: no idempotency key
    assert await product_stock(stack, sku) == 1
    async with stack.sessions() as s:
        row = (
            await s.execute(
                select(Order.id, Order.status, Order.cancel_reason)
                .join(OrderItem, OrderItem.order_id == Order.id)
                .where(OrderItem.sku == sku)
            )
        ).one()
    assert (row.status, row.cancel_reason) == ("cancelled", "checkout_failed")
    lost = [o for o in razorpay_api.orders.values() if o["receipt"] == str(row.id)]
    assert len(lost) == (1 if after else 0)

    order = (await stack.http.post("/orders", json=body, headers=stack.user())).json()
    assert order["status"] == "awaiting_payment" and await product_stock(stack, sku) == 0
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    back = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id, secret=KEY_SECRET),
        headers=stack.user(),
    )
    assert back.status_code == 200 and back.json()["status"] == "paid", back.text
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
