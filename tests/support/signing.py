"""Signed gateway requests in each gateway's real format: the test secrets, each gateway's
events, and its signature.

Stripe and Standard Webhooks requests are signed with the official SDK helpers; Razorpay
has no signing helper in its SDK, so plain HMAC-SHA256 of the body, as its docs specify.
`sign` signs any bytes by hand, as each gateway documents it (the SDK helpers take text only,
and some hostile bodies are not UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import standardwebhooks
import stripe

SECRETS = {
    "jwt": "test-jwt-secret-0123456789abcdef0123456789",
    "razorpay": "rzp_webhook_secret_current",
    "stripe": "whsec_test_stripe_current",
    "standard": "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode(),
    # The Razorpay API key secret, which signs checkout returns (not a webhook secret).
    "razorpay_key_secret": "rzp_key_secret_for_checkout_returns",
}

Request = tuple[bytes, dict[str, str]]
Headers = list[tuple[str, str]]


def razorpay_signature(message: bytes, secret: str) -> str:
    """Razorpay's one scheme, for webhooks and checkout returns alike: hex HMAC-SHA256."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def razorpay_payment_event(
    intent_id: str,
    transaction_id: str,
    amount: int,
    currency: str = "INR",
    event: str = "payment.captured",
) -> dict[str, Any]:
    payment = {
        "id": transaction_id,
        "entity": "payment",
        "amount": amount,
        "currency": currency,
        "status": "captured",
        "order_id": intent_id,
        "method": "upi",
        "captured": True,
    }
    payload: dict[str, Any] = {"payment": {"entity": payment}}
    contains = ["payment"]
    if event == "order.paid":
        payload["order"] = {
            "entity": {
                "id": intent_id,
                "entity": "order",
                "amount": amount,
                "amount_paid": amount,
                "status": "paid",
            }
        }
        contains.append("order")
    return {
        "entity": "event",
        "account_id": "acc_Test",
        "event": event,
        "contains": contains,
        "payload": payload,
        "created_at": int(time.time()),
    }


def razorpay_request(event: dict[str, Any], secret: str = SECRETS["razorpay"]) -> Request:
    return razorpay_signed(json.dumps(event).encode(), secret)


def razorpay_signed(body: bytes, secret: str = SECRETS["razorpay"]) -> Request:
    """Raw bytes as Razorpay signs them (for bodies `json.dumps` would not write)."""
    signature = razorpay_signature(body, secret)
    return body, {
        "Content-Type": "application/json",
        "X-Razorpay-Signature": signature,
        "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex[:14]}",
    }


def stripe_succeeded_event(intent_id: str, amount: int, currency: str = "eur") -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": currency,
                "status": "succeeded",
                "latest_charge": "ch_test",
                "metadata": {},
            }
        },
    }


def stripe_request(
    event: dict[str, Any], secret: str = SECRETS["stripe"], timestamp: int | None = None
) -> Request:
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body.encode(), {"Content-Type": "application/json", "Stripe-Signature": header}


def standard_request(
    event: dict[str, Any], secret: str = SECRETS["standard"], when: datetime | None = None
) -> Request:
    body = json.dumps(event)
    msg_id = f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body)
    return body.encode(), {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def standard_succeeded_event(
    intent_id: str, transaction_id: str, amount: int, currency: str = "USD"
) -> dict[str, Any]:
    return {
        "type": "payment.succeeded",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "transaction_id": transaction_id,
            "intent_id": intent_id,
            "amount": amount,
            "currency": currency,
        },
    }


def checkout_return(
    order: dict[str, Any], payment_id: str, secret: str = SECRETS["razorpay_key_secret"]
) -> dict[str, str]:
    """What Razorpay's checkout hands the browser (its documented signature)."""
    intent = order["payment"]["intent_id"]
    return {
        "razorpay_order_id": intent,
        "razorpay_payment_id": payment_id,
        "razorpay_signature": razorpay_signature(f"{intent}|{payment_id}".encode(), secret),
    }


def _std_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(
    provider: str,
    body: bytes,
    *,
    secret: str | None = None,
    timestamp: str | None = None,
) -> Headers:
    """The headers the gateway would send for `body` (optionally with an odd timestamp)."""
    secret = secret or SECRETS[provider]
    if provider == "razorpay":
        signature = razorpay_signature(body, secret)
        return [("X-Razorpay-Signature", signature), ("X-Razorpay-Event-Id", "evt_hostile")]
    t = timestamp if timestamp is not None else str(int(time.time()))
    if provider == "stripe":
        hexmac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return [("Stripe-Signature", f"t={t},v1={hexmac}")]
    msg_id = f"msg_{uuid.uuid4().hex}"
    mac = hmac.new(_std_key(secret), f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", t),
        ("webhook-signature", "v1," + base64.b64encode(mac).decode()),
    ]
