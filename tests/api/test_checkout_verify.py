"""Synchronous confirmation from Razorpay's checkout return (`POST /payments/razorpay/verify`)
on the real stack, online against the Razorpay test server (the return proves an
authorization; the payment is looked up): it joins the webhook's workflow, so
redirect-then-webhook and webhook-then-redirect each end with one payment; a forged return is
a 400 and a security event; a return while the payments table refuses writes is a 202, then
paid once it heals. With the key secret alone (no API to ask) a return is a 202 until the
`payment.captured` webhook has confirmed the payment. Authorized payments:
tests/api/test_razorpay_capture.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from db.models import SecurityEvent
from domain.payments import confirmation_workflow_id
from tests.support.outcomes import NO_CONFIRMATION, ONE_CONFIRMATION, count, effects
from tests.support.razorpay_server import RazorpayApiServer, running_razorpay
from tests.support.signing import SECRETS, checkout_return, razorpay_payment_event, razorpay_request
from tests.support.stack import Refuse, Stack

KEY_ID, KEY_SECRET = "rzp_test_verify", SECRETS["razorpay_key_secret"]
# The key secret alone: it verifies checkout returns, and nothing can say they were captured.
SECRET_ONLY = {"PAYSAGA_RAZORPAY_KEY_ID": "", "PAYSAGA_RAZORPAY_API_BASE": ""}


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayApiServer]:
    yield from running_razorpay(KEY_ID, KEY_SECRET)


@pytest.fixture
def stack_env(razorpay_api: RazorpayApiServer, request: pytest.FixtureRequest) -> dict[str, str]:
    online = {
        "PAYSAGA_RAZORPAY_KEY_ID": KEY_ID,
        "PAYSAGA_RAZORPAY_KEY_SECRET": KEY_SECRET,
        "PAYSAGA_RAZORPAY_API_BASE": razorpay_api.url,
        "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "60",
        "PAYSAGA_RETRY_FAST_MAX_SECONDS": "1",
    }
    return online | getattr(request, "param", {})


def webhook(order: dict[str, Any], payment_id: str) -> tuple[bytes, dict[str, str]]:
    return razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], payment_id, order["amount"])
    )


async def test_redirect_then_webhook_is_one_payment(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    answer = await stack.http.post(
        "/payments/razorpay/verify", json=checkout_return(order, payment_id), headers=stack.user()
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paid" and answer.json()["id"] == order["id"]
    late = await stack.post("/webhooks/razorpay", webhook(order, payment_id))
    assert late.json() == {"result": "duplicate"}
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_webhook_then_redirect_is_one_payment(
    stack: Stack, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    first = await stack.post("/webhooks/razorpay", webhook(order, payment_id))
    assert first.json() == {"result": "accepted"}
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    answer = await stack.http.post(
        "/payments/razorpay/verify", json=checkout_return(order, payment_id), headers=stack.user()
    )
    assert answer.status_code == 200 and answer.json()["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_forged_or_foreign_returns_are_refused_and_change_nothing(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    payment_id = f"pay_{uuid.uuid4().hex[:14]}"
    forged = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id, secret="not-the-key-secret"),
        headers=stack.user(),
    )
    assert forged.status_code == 400 and "signature" in forged.json()["detail"]
    async with stack.sessions() as s:
        rejected = await s.scalar(select(SecurityEvent).where(SecurityEvent.provider == "razorpay"))
    assert rejected is not None and rejected.kind == "invalid_signature"
    foreign = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id),
        headers=stack.user("mallory"),
    )
    assert foreign.status_code == 404
    malformed = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, payment_id) | {"razorpay_signature": "zz"},
        headers=stack.user(),
    )
    assert malformed.status_code in (400, 422)
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert await effects(stack.sessions, order["id"]) == NO_CONFIRMATION


async def test_redirect_during_an_outage_is_202_then_paid_after_recovery(
    stack: Stack, refuse: Refuse, razorpay_api: RazorpayApiServer
) -> None:
    order = await stack.place_order("razorpay")
    payment_id = razorpay_api.pay(order["payment"]["intent_id"])
    await refuse("payments", "UPDATE")
    answer = await stack.http.post(
        "/payments/razorpay/verify", json=checkout_return(order, payment_id), headers=stack.user()
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "processing"
    # Never "paid" before the payment is stored.
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    webhook_meanwhile = await stack.post("/webhooks/razorpay", webhook(order, payment_id))
    assert webhook_meanwhile.json() == {"result": "duplicate"}

    await refuse.lift("payments", "UPDATE")
    outcome = await stack.result(confirmation_workflow_id("razorpay", payment_id))
    assert outcome.outcome == "paid"
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
    assert await count(stack.sessions, SecurityEvent) == 0


@pytest.mark.parametrize("stack_env", [SECRET_ONLY], indirect=True)
async def test_with_the_key_secret_alone_a_return_waits_for_the_captured_webhook(
    stack: Stack,
) -> None:
    """The signature proves an authorization, not captured money: 202, nothing started,
    until `payment.captured` confirms; then the same return is 200."""
    order = await stack.place_order("razorpay")
    payment_id = f"pay_{uuid.uuid4().hex[:14]}"
    proof = checkout_return(order, payment_id)
    early = await stack.http.post("/payments/razorpay/verify", json=proof, headers=stack.user())
    assert early.status_code == 202 and early.json()["status"] == "processing", early.text
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert await effects(stack.sessions, order["id"]) == NO_CONFIRMATION
    captured = await stack.post("/webhooks/razorpay", webhook(order, payment_id))
    assert captured.json() == {"result": "accepted"}
    await stack.result(confirmation_workflow_id("razorpay", payment_id))
    again = await stack.http.post("/payments/razorpay/verify", json=proof, headers=stack.user())
    assert again.status_code == 200 and again.json()["status"] == "paid", again.text
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


@pytest.mark.parametrize("stack_env", [{}])
async def test_offline_mode_says_returns_are_not_verified(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    answer = await stack.http.post(
        "/payments/razorpay/verify",
        json=checkout_return(order, f"pay_{uuid.uuid4().hex[:14]}"),
        headers=stack.user(),
    )
    assert answer.status_code == 409 and "offline" in answer.json()["detail"]
