"""Authorize, then capture (issue 26), online against the Razorpay test server
(`tests.support.razorpay_server`) with the official SDK as the client.

`payment.authorized` for an order awaiting payment is captured through the API, then the
order is paid, once; a refused capture leaves the order unpaid with a `capture_refused` case;
an authorization for a cancelled order is never captured, leaves the order as it was, and is
on the order's audit trail and in the open cases; a checkout return for an authorized payment
is captured exactly once and never answered "paid" before the capture. Offline,
`payment.authorized` is `ignored` (tests/api/test_webhooks.py,
`test_valid_event_we_do_not_act_on_is_ignored`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from domain.payments import confirmation_workflow_id
from tests.support.outcomes import NO_CONFIRMATION, effects
from tests.support.razorpay_server import RazorpayApiServer, running_razorpay
from tests.support.signing import checkout_return, razorpay_payment_event, razorpay_request
from tests.support.stack import Stack

KEY_ID, KEY_SECRET = "rzp_test_capture", "rzp_test_secret_for_captures"
# What one captured authorization leaves: the confirmation's rows, with a `payment.captured`
# audit entry beside `payment.confirmed` and the order's status change.
CAPTURED = {
    "paid_payments": 1,
    "audit": 3,
    "tickets": 1,
    "order_paid_events": 1,
    "payment_confirmed_events": 1,
}


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayApiServer]:
    yield from running_razorpay(KEY_ID, KEY_SECRET)


@pytest.fixture
def stack_env(razorpay_api: RazorpayApiServer) -> dict[str, str]:
    return {
        "PAYSAGA_RAZORPAY_KEY_ID": KEY_ID,
        "PAYSAGA_RAZORPAY_KEY_SECRET": KEY_SECRET,
        "PAYSAGA_RAZORPAY_API_BASE": razorpay_api.url,
    }


def event(
    order: dict[str, Any], payment_id: str, name: str = "payment.authorized", captured: bool = False
) -> tuple[bytes, dict[str, str]]:
    """Razorpay's webhook for the payment, its entity as Razorpay sends it at that point."""
    body = razorpay_payment_event(
        order["payment"]["intent_id"], payment_id, order["amount"], order["currency"], name
    )
    body["payload"]["payment"]["entity"] |= {
        "status": "captured" if captured else "authorized",
        "captured": captured,
    }
    return razorpay_request(body)


async def audit_actions(stack: Stack, order_id: str) -> list[str]:
    answer = await stack.http.get(f"/admin/audit?order_id={order_id}", headers=stack.admin)
    assert answer.status_code == 200, answer.text
    return [entry["action"] for entry in answer.json()]


async def open_case_kinds(stack: Stack, payment_id: str) -> list[str]:
    answer = await stack.http.get("/admin/reconciliation", headers=stack.admin)
    assert answer.status_code == 200, answer.text
    return [c["kind"] for c in answer.json() if c["transaction_id"] == payment_id]


async def test_an_authorization_is_captured_then_the_order_paid(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay", amount=49900, currency="INR")
    payment_id = razorpay_api.authorize(order["payment"]["intent_id"])
    answer = await stack.post("/webhooks/razorpay", event(order, payment_id))
    assert answer.json() == {"result": "accepted"}
    outcome = await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert outcome.outcome == "paid"
    assert razorpay_api.payments[payment_id]["status"] == "captured"
    assert razorpay_api.capture_calls.count(payment_id) == 1
    after = await stack.order(order["id"])
    assert after["status"] == "paid" and after["ticket"] is not None
    assert await effects(stack.sessions, order["id"]) == CAPTURED
    assert "payment.captured" in await audit_actions(stack, order["id"])
    # Razorpay's own capture webhook follows: the same payment, the same workflow.
    again = await stack.post(
        "/webhooks/razorpay", event(order, payment_id, "payment.captured", True)
    )
    assert again.json() == {"result": "duplicate"}
    assert razorpay_api.capture_calls.count(payment_id) == 1
    assert await effects(stack.sessions, order["id"]) == CAPTURED


async def test_an_authorization_that_says_captured_is_not_captured_again(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    """Razorpay's own example of `payment.authorized` on an account with automatic capture:
    its entity already says `captured`."""
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    answer = await stack.post("/webhooks/razorpay", event(order, payment_id, captured=True))
    assert answer.json() == {"result": "accepted"}
    assert (await stack.result(confirmation_workflow_id("razorpay", payment_id))).outcome == "paid"
    assert payment_id not in razorpay_api.capture_calls


async def test_a_refused_capture_leaves_the_order_unpaid_with_a_case(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.authorize(order["payment"]["intent_id"])
    razorpay_api.refuse_captures = 1
    answer = await stack.post("/webhooks/razorpay", event(order, payment_id))
    assert answer.json() == {"result": "accepted"}
    workflow_id = confirmation_workflow_id("razorpay", payment_id)
    state = await stack.wait_state(workflow_id, "needs_reconciliation", lambda s: s.parked)
    assert state.cases == ["capture_refused"]
    assert razorpay_api.capture_calls.count(payment_id) == 1  # a refusal is not retried
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert await effects(stack.sessions, order["id"]) | {"audit": 0} == NO_CONFIRMATION
    assert await open_case_kinds(stack, payment_id) == ["capture_refused"]
    assert "payment.capture_refused" in await audit_actions(stack, order["id"])
    # Nothing was captured, so there is nothing to refund; an operator's retry captures.
    path = f"/admin/payments/razorpay/{payment_id}"
    refund = await stack.http.post(
        f"{path}/refund", json={"request_id": "r1", "reason": "x"}, headers=stack.admin
    )
    assert refund.status_code == 409 and "never captured" in refund.json()["detail"]
    retry = await stack.http.post(f"{path}/retry", json={"request_id": "r2"}, headers=stack.admin)
    assert retry.status_code == 202, retry.text
    assert (await stack.result(workflow_id)).outcome == "paid"
    assert razorpay_api.capture_calls.count(payment_id) == 2
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await open_case_kinds(stack, payment_id) == []


async def test_an_authorization_for_a_cancelled_order_is_left_uncaptured(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    cancelled = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
    assert cancelled.status_code == 200
    before = await stack.order(order["id"])
    payment_id = razorpay_api.authorize(order["payment"]["intent_id"])
    answer = await stack.post("/webhooks/razorpay", event(order, payment_id))
    assert answer.json() == {"result": "accepted"}
    workflow_id = confirmation_workflow_id("razorpay", payment_id)
    state = await stack.wait_state(workflow_id, "needs_reconciliation", lambda s: s.parked)
    assert state.cases == ["authorization_uncaptured"]
    # Never captured (so never refunded): Razorpay voids the authorization.
    assert payment_id not in razorpay_api.capture_calls
    assert razorpay_api.payments[payment_id]["status"] == "authorized"
    after = await stack.order(order["id"])
    assert (after["status"], after["payments"], after["ticket"]) == (
        "cancelled",
        before["payments"],
        None,
    )
    assert await open_case_kinds(stack, payment_id) == ["authorization_uncaptured"]
    assert "payment.left_uncaptured" in await audit_actions(stack, order["id"])
    resolve = await stack.http.post(
        f"/admin/payments/razorpay/{payment_id}/resolve",
        json={"request_id": "r1", "note": "voided by Razorpay"},
        headers=stack.admin,
    )
    assert resolve.status_code == 202, resolve.text
    assert (await stack.result(workflow_id)).outcome == "resolved"
    assert await open_case_kinds(stack, payment_id) == []


async def test_a_checkout_return_for_an_authorized_payment_captures_before_paid(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    """The capture is held at the server past the return's wait: the return must not say
    paid meanwhile; then the capture goes through, once, and the order is paid."""
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.authorize(order["payment"]["intent_id"])
    razorpay_api.capture_delay = 4.0  # longer than the return waits for "paid" (3 s)
    proof = checkout_return(order, payment_id, secret=KEY_SECRET)
    try:
        first = await stack.http.post("/payments/razorpay/verify", json=proof, headers=stack.user())
        assert first.status_code == 202 and first.json()["status"] == "processing", first.text
        assert razorpay_api.payments[payment_id]["status"] == "authorized"
        assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
        # Its webhook, meanwhile: the same workflow.
        webhook = await stack.post("/webhooks/razorpay", event(order, payment_id))
        assert webhook.json() == {"result": "duplicate"}
        outcome = await stack.result(confirmation_workflow_id("razorpay", payment_id))
    finally:
        razorpay_api.capture_delay = 0.0
    assert outcome.outcome == "paid"
    again = await stack.http.post("/payments/razorpay/verify", json=proof, headers=stack.user())
    assert again.status_code == 200 and again.json()["status"] == "paid", again.text
    assert razorpay_api.capture_calls.count(payment_id) == 1
    assert razorpay_api.payments[payment_id]["status"] == "captured"
    assert await effects(stack.sessions, order["id"]) == CAPTURED


async def test_a_checkout_return_for_an_authorized_payment_answers_paid_once_captured(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.authorize(order["payment"]["intent_id"])
    proof = checkout_return(order, payment_id, secret=KEY_SECRET)
    answers = await asyncio.gather(
        stack.http.post("/payments/razorpay/verify", json=proof, headers=stack.user()),
        stack.post("/webhooks/razorpay", event(order, payment_id)),
    )
    assert answers[0].status_code == 200 and answers[0].json()["status"] == "paid"
    assert answers[1].json()["result"] in ("accepted", "duplicate")
    assert razorpay_api.capture_calls.count(payment_id) == 1
    assert (await stack.result(confirmation_workflow_id("razorpay", payment_id))).outcome == "paid"
    assert await effects(stack.sessions, order["id"]) == CAPTURED
