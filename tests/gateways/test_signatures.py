"""Each gateway's real signature scheme, signed by the official SDK helpers where they exist."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateways import MalformedEvent, SignatureError, gateway_for
from tests.support.signing import (
    SECRETS,
    razorpay_payment_event,
    razorpay_request,
    standard_request,
    standard_succeeded_event,
    stripe_request,
    stripe_succeeded_event,
)

RETIRED = {"razorpay": "rzp_retired", "stripe": "whsec_retired", "standard": "whsec_cmV0aXJlZA=="}


def signed(provider: str, secret: str) -> tuple[bytes, dict[str, str]]:
    if provider == "razorpay":
        return razorpay_request(razorpay_payment_event("order_A", "pay_A", 100), secret)
    if provider == "stripe":
        return stripe_request(stripe_succeeded_event("pi_A", 100), secret)
    return standard_request(standard_succeeded_event("int_A", "txn_A", 100), secret)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
def test_rotation_any_current_secret_verifies_a_retired_one_does_not(provider: str) -> None:
    new, old = SECRETS[provider], RETIRED[provider]
    during_rotation = gateway_for(provider, (new, old))
    after_rotation = gateway_for(provider, (new,))
    for secret in (new, old):
        body, headers = signed(provider, secret)
        during_rotation.verify(body, lower(headers), time.time())
    body, headers = signed(provider, old)
    with pytest.raises(SignatureError):
        after_rotation.verify(body, lower(headers), time.time())


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
def test_one_changed_byte_fails(provider: str) -> None:
    body, headers = signed(provider, SECRETS[provider])
    gateway = gateway_for(provider, (SECRETS[provider],))
    with pytest.raises(SignatureError):
        gateway.verify(body.replace(b"100", b"900"), lower(headers), time.time())


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
def test_no_secret_configured_verifies_nothing(provider: str) -> None:
    body, headers = signed(provider, SECRETS[provider])
    with pytest.raises(SignatureError):
        gateway_for(provider, ()).verify(body, lower(headers), time.time())


def test_old_stripe_timestamp_is_rejected() -> None:
    old = int(time.time()) - 301
    body, headers = stripe_request(stripe_succeeded_event("pi_A", 100), timestamp=old)
    gateway = gateway_for("stripe", (SECRETS["stripe"],))
    with pytest.raises(SignatureError, match="tolerance"):
        gateway.verify(body, lower(headers), time.time())
    gateway.verify(body, lower(headers), old + 299)  # the same header was fine back then


def test_old_standard_webhook_timestamp_is_rejected() -> None:
    when = datetime.now(UTC) - timedelta(minutes=6)
    body, headers = standard_request(standard_succeeded_event("int_A", "txn_A", 1), when=when)
    with pytest.raises(SignatureError, match="tolerance"):
        gateway_for("standard", (SECRETS["standard"],)).verify(body, lower(headers), time.time())


def test_stripe_confirmation_uses_amount_received_and_upper_cases_currency() -> None:
    event = stripe_succeeded_event("pi_123", 5000, "usd")
    event["data"]["object"]["amount_received"] = 4000
    parsed = gateway_for("stripe", ()).parse(json.dumps(event).encode(), {})
    assert parsed.confirmation is not None
    assert (
        parsed.confirmation.transaction_id,
        parsed.confirmation.amount,
        parsed.confirmation.currency,
    ) == ("pi_123", 4000, "USD")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["payload"]["payment"]["entity"].update(amount=10.0),
        lambda e: e["payload"]["payment"]["entity"].update(currency="rupees"),
        lambda e: e["payload"]["payment"]["entity"].pop("order_id"),
        lambda e: e["payload"].pop("payment"),
    ],
)
def test_malformed_razorpay_events(mutate: object) -> None:
    event = razorpay_payment_event("order_A", "pay_A", 100)
    mutate(event)  # type: ignore[operator]
    with pytest.raises(MalformedEvent):
        gateway_for("razorpay", ()).parse(json.dumps(event).encode(), {})


def test_not_json_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        gateway_for("standard", ()).parse(b"\xff not json", {})
