"""Razorpay online mode against a small server speaking Razorpay's documented API
(`tests.support.razorpay_server`; there is no Razorpay emulator), with the official `razorpay`
SDK as the client: the Razorpay order is created at checkout, the checkout return is verified, a
refund goes through the API once, a payment whose webhook never came is found before the
window closes, and a Razorpay that is down at checkout is a 503 with nothing reserved."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from domain.payments import confirmation_workflow_id, refund_workflow_id
from tests.support.outcomes import (
    ONE_CONFIRMATION,
    assert_checkout_refused_with_nothing_reserved,
    effects,
    lifecycle_result,
)
from tests.support.razorpay_server import RazorpayApiServer
from tests.support.signing import checkout_return
from tests.support.stack import Stack

KEY_ID, KEY_SECRET = "rzp_test_paysaga", "rzp_test_secret_for_the_api"


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayApiServer]:
    server = RazorpayApiServer(KEY_ID, KEY_SECRET)
    yield server
    server.close()


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
    assert await lifecycle_result(stack, order["id"]) == "paid"
    assert (await stack.order(order["id"]))["status"] == "paid"
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


@pytest.mark.parametrize(
    "stack_env", [{"PAYSAGA_RAZORPAY_API_BASE": "http://127.0.0.1:9"}], indirect=True
)
async def test_razorpay_down_at_checkout_is_503_with_nothing_reserved(stack: Stack) -> None:
    await assert_checkout_refused_with_nothing_reserved(stack, "razorpay")
