"""The currency table: ISO 4217 minor units against Stripe's and Razorpay's own, both ways,
and webhooks' amounts arriving in ISO minor units."""

from __future__ import annotations

import json

import pytest

from gateways import MalformedEvent, gateway_for
from gateways.currencies import NotRepresentable, from_gateway, rule, to_gateway
from tests.support.signing import razorpay_payment_event, stripe_succeeded_event


@pytest.mark.parametrize(
    ("gateway", "amount", "currency", "theirs"),
    [
        ("stripe", 49900, "EUR", 49900),  # two decimals both sides
        ("stripe", 1500, "JPY", 1500),  # zero-decimal both sides
        ("stripe", 1500, "UGX", 1500),
        ("stripe", 50000, "MGA", 500),  # ISO: 2 decimals; Stripe: whole ariary
        ("stripe", 5, "ISK", 500),  # ISO: whole krónur; Stripe: hundredths, multiples of 100
        ("stripe", 1234560, "KWD", 1234560),  # three decimals, last digit 0
        ("stripe", 10050, "HUF", 10050),  # HUF/TWD: zero-decimal for payouts only
        ("stripe", 10050, "TWD", 10050),
        ("stripe", 12340, "IQD", 1234),  # three at ISO, two at Stripe (not in its list)
        ("razorpay", 49900, "INR", 49900),
        ("razorpay", 295, "JPY", 295),
        ("razorpay", 295990, "KWD", 295990),
        ("razorpay", 295990, "OMR", 295990),
        ("standard", 7, "BHD", 7),  # ISO as it is
    ],
)
def test_amounts_convert_exactly_both_ways(
    gateway: str, amount: int, currency: str, theirs: int
) -> None:
    assert to_gateway(gateway, amount, currency) == theirs
    assert from_gateway(gateway, theirs, currency) == amount


@pytest.mark.parametrize(
    ("gateway", "amount", "currency"),
    [
        ("stripe", 50050, "MGA"),  # 500.50 ariary: Stripe has no fraction of an ariary
        ("stripe", 5124, "KWD"),  # 5.124 KWD: Stripe wants the last digit 0
        ("stripe", 12345, "IQD"),  # a thousandth Stripe's two decimals cannot hold
        ("razorpay", 99991, "KWD"),  # Razorpay: 99.991 KD must be 99.990
        ("razorpay", 1, "BHD"),
    ],
)
def test_an_amount_the_gateway_cannot_take_is_refused_with_the_reason(
    gateway: str, amount: int, currency: str
) -> None:
    with pytest.raises(NotRepresentable, match=gateway):
        to_gateway(gateway, amount, currency)


@pytest.mark.parametrize(
    ("gateway", "theirs", "currency"),
    [("stripe", 150, "ISK"), ("stripe", 1, "ISK"), ("stripe", 199, "ISK")],
)
def test_a_reported_amount_with_no_exact_iso_value_is_refused(
    gateway: str, theirs: int, currency: str
) -> None:
    with pytest.raises(NotRepresentable, match="ISO 4217"):
        from_gateway(gateway, theirs, currency)


def test_rules_are_read_case_insensitively_and_default_to_two_decimals() -> None:
    assert rule("stripe", "jpy").exponent == 0
    assert rule("stripe", "kwd").step == 10
    assert rule("stripe", "isk").step == 100
    assert rule("stripe", "XYZ").exponent == 2
    assert rule("razorpay", "xyz").exponent == 2
    assert to_gateway("stripe", 5, "isk") == 500


def stripe_succeeded(amount: int, currency: str) -> bytes:
    return json.dumps(stripe_succeeded_event("pi_1", amount, currency)).encode()


def test_webhook_amounts_arrive_in_iso_minor_units() -> None:
    stripe = gateway_for("stripe", ("whsec_x",))
    event = stripe.parse(stripe_succeeded(500, "isk"), {})
    assert event.confirmation is not None
    assert (event.confirmation.amount, event.confirmation.currency) == (5, "ISK")
    event = stripe.parse(stripe_succeeded(500, "mga"), {})
    assert event.confirmation is not None and event.confirmation.amount == 50000
    with pytest.raises(MalformedEvent, match="ISO 4217"):
        stripe.parse(stripe_succeeded(150, "isk"), {})  # 1.50 krónur: no such ISO amount
    razorpay = gateway_for("razorpay", ("secret",))
    body = razorpay_payment_event("order_1", "pay_1", 295990, "KWD")
    captured = razorpay.parse(json.dumps(body).encode(), {"x-razorpay-event-id": "e1"})
    assert captured.confirmation is not None and captured.confirmation.amount == 295990
