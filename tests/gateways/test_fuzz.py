"""Property-based fuzzing of the verifiers and parsers: for any bytes and any headers, a
gateway adapter returns (or verifies) or raises the one typed error the API maps to a 4xx
(SignatureError: 401, MalformedEvent: 400). Anything else would be a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways import MalformedEvent, SignatureError, gateway_for
from tests.support.signing import SECRETS, sign

PROVIDERS = ("razorpay", "stripe", "standard")
HEADERS = (
    "x-razorpay-signature",
    "x-razorpay-event-id",
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
# Header values as an ASGI server hands them over: text decoded as latin-1.
header_text = st.text(st.characters(max_codepoint=255, exclude_categories=["Cs"]), max_size=80)
headers = st.dictionaries(st.sampled_from(HEADERS), header_text | st.just(""), max_size=6)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["pay_1", "order_1", "pi_1", "INR", "usd", "ß", "\u0000", "9" * 30])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
# Shapes close to real events, so the parsers get past their first checks.
EVENT_KEYS = (
    "event",
    "type",
    "id",
    "payload",
    "data",
    "payment",
    "entity",
    "object",
    "amount",
    "amount_received",
    "currency",
    "order_id",
    "intent_id",
    "transaction_id",
    "livemode",
)
event_like = st.recursive(
    scalars,
    lambda inner: st.dictionaries(st.sampled_from(EVENT_KEYS), inner, max_size=6),
    max_leaves=30,
)
TYPES = [
    "payment.captured",
    "order.paid",
    "payment.failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment.succeeded",
    "payment.cancelled",
]


@pytest.mark.parametrize("provider", PROVIDERS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=512), hdrs=headers)
def test_any_bytes_and_headers_verify_or_raise_signature_error(
    provider: str, body: bytes, hdrs: dict[str, str]
) -> None:
    gateway = gateway_for(provider, (SECRETS[provider],))
    try:
        gateway.verify(body, hdrs, time.time())
    except SignatureError:
        return
    pytest.fail("an unsigned body verified")  # no secret is in these headers


@pytest.mark.parametrize("provider", PROVIDERS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=512)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.tuples(st.sampled_from(TYPES), event_like).map(
        lambda t: json.dumps({"event": t[0], "type": t[0], "data": t[1], "payload": t[1]}).encode()
    )
)
def test_any_signed_body_parses_or_raises_malformed_event(provider: str, body: bytes) -> None:
    gateway = gateway_for(provider, (SECRETS[provider],))
    hdrs = {k.lower(): v for k, v in sign(provider, body)}
    try:
        gateway.verify(body, hdrs, time.time())
    except SignatureError:
        # Only a body a text-based verifier cannot read may fail a correct signature.
        assert provider != "razorpay"
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")  # a readable body must have verified
        return
    try:
        event = gateway.parse(body, hdrs)
    except MalformedEvent:
        return
    c: Any = event.confirmation
    if c is not None:  # what reaches a workflow is always storable
        assert isinstance(c.amount, int) and 0 <= c.amount < 2**63
        assert len(c.currency) == 3 and c.currency.isascii() and c.currency.isupper()
        assert c.transaction_id.isascii() and c.transaction_id.isprintable()
