"""Each gateway's events in full, as its own published examples carry them (Razorpay's SDK
test mocks and documented samples; Stripe's OpenAPI fixtures), through our parsers: every
field present, the odd ones included (nulls, empty `notes` arrays, nested objects, an old
API version's `charges` list, a `payment.authorized` whose entity already says `captured`,
a charge made without a PaymentIntent). What we read is what the gateway meant."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways.base import GatewayEvent
from gateways.registry import gateway_for
from tests.support.signing import (
    STRIPE_API_VERSION,
    STRIPE_OLD_API_VERSION,
    razorpay_payment_event,
    razorpay_refund_event,
    stripe_failed_event,
    stripe_refunded_event,
    stripe_succeeded_event,
)


def parse(provider: str, event: dict[str, Any]) -> GatewayEvent:
    headers = {"x-razorpay-event-id": "evt_shape"} if provider == "razorpay" else {}
    return gateway_for(provider, ()).parse(json.dumps(event).encode(), headers)


@pytest.mark.parametrize("event_type", ["payment.captured", "order.paid"])
def test_a_razorpay_capture_in_full_confirms_the_payment(event_type: str) -> None:
    event = razorpay_payment_event("order_Full", "pay_Full", 49900, "INR", event=event_type)
    entity = event["payload"]["payment"]["entity"]
    assert entity["notes"] == [] and entity["invoice_id"] is None and entity["card"]["last4"]
    found = parse("razorpay", event).confirmation
    assert found is not None
    assert (found.transaction_id, found.intent_id, found.amount, found.currency) == (
        "pay_Full",
        "order_Full",
        49900,
        "INR",
    )


@pytest.mark.parametrize("status", ["authorized", "captured"])
def test_a_razorpay_authorization_parses_whatever_its_entity_says(status: str) -> None:
    """Razorpay's own mock of `payment.authorized` carries an entity already `captured`
    (auto-capture): still an authorization event, never malformed, never a confirmation by
    itself (the capture or `payment.captured` confirms)."""
    event = razorpay_payment_event(
        "order_Auth", "pay_Auth", 1000000, event="payment.authorized", status=status
    )
    parsed = parse("razorpay", event)
    assert parsed.event_type == "payment.authorized"
    assert parsed.confirmation is None
    assert parsed.attempt_end is None and parsed.refund is None


def test_a_razorpay_failure_in_full_ends_the_attempt_with_its_reason() -> None:
    event = razorpay_payment_event("order_Fail", "pay_Fail", 500, event="payment.failed")
    end = parse("razorpay", event).attempt_end
    assert end is not None
    assert (end.intent_id, end.status, end.reason) == (
        "order_Fail",
        "failed",
        "Payment failed because the card was declined",
    )


@pytest.mark.parametrize("succeeded", [True, False])
def test_a_razorpay_refund_event_carries_its_payment_too(succeeded: bool) -> None:
    """`contains: ["refund", "payment"]`: the refund is read from the refund entity, not from
    the refunded payment beside it."""
    event = razorpay_refund_event("rfnd_Full", "pay_Paid", 4000, "INR", succeeded=succeeded)
    assert event["payload"]["payment"]["entity"]["id"] == "pay_Paid"
    notice = parse("razorpay", event).refund
    assert notice is not None
    assert (notice.transaction_id, notice.refund_id, notice.amount, notice.status) == (
        "pay_Paid",
        "rfnd_Full",
        4000,
        "succeeded" if succeeded else "failed",
    )


@pytest.mark.parametrize("api_version", [STRIPE_API_VERSION, STRIPE_OLD_API_VERSION])
def test_a_stripe_success_in_full_confirms_on_either_api_version(api_version: str) -> None:
    event = stripe_succeeded_event("pi_Full", 49900, "eur", api_version=api_version)
    intent = event["data"]["object"]
    if api_version == STRIPE_OLD_API_VERSION:
        assert "latest_charge" not in intent and intent["charges"]["data"][0]["amount"] == 49900
    else:
        assert intent["latest_charge"].startswith("ch_") and "charges" not in intent
    found = parse("stripe", event).confirmation
    assert found is not None
    assert (found.transaction_id, found.amount, found.currency, found.order_id) == (
        "pi_Full",
        49900,
        "EUR",
        None,  # `metadata: {}`: an intent we did not make names no order
    )


@pytest.mark.parametrize("cancelled", [False, True])
def test_a_stripe_failure_in_full_ends_the_attempt(cancelled: bool) -> None:
    end = parse("stripe", stripe_failed_event("pi_Fail", 1000, cancelled=cancelled)).attempt_end
    assert end is not None
    assert (end.intent_id, end.status, end.reason) == (
        ("pi_Fail", "cancelled", "abandoned")
        if cancelled
        else ("pi_Fail", "failed", "Your card was declined.")
    )


def test_a_stripe_failure_whose_error_has_no_message_has_no_reason() -> None:
    """Stripe's fixture: `last_payment_error: {"type": "idempotency_error"}` and nothing else."""
    event = stripe_failed_event("pi_Bare", 1000)
    event["data"]["object"]["last_payment_error"] = {"type": "idempotency_error"}
    end = parse("stripe", event).attempt_end
    assert end is not None and end.reason is None


@pytest.mark.parametrize("refunded", [1000, 400])
def test_a_stripe_refund_in_full_reads_what_went_back(refunded: int) -> None:
    event = stripe_refunded_event("pi_Paid", 1000, "eur", refunded=refunded)
    assert event["data"]["previous_attributes"]["amount_refunded"] == 0
    notice = parse("stripe", event).refund
    assert notice is not None
    assert (notice.transaction_id, notice.amount, notice.currency) == ("pi_Paid", refunded, "EUR")


def test_a_refund_of_a_charge_made_without_a_payment_intent_is_not_ours() -> None:
    """Stripe's own charge fixture has `payment_intent: null` (a charge made through the
    Charges API). Once malformed (a 400, retried by Stripe for days); now a valid event we do
    not act on."""
    parsed = parse("stripe", stripe_refunded_event(None, 1000))
    assert (parsed.confirmation, parsed.attempt_end, parsed.refund) == (None, None, None)
