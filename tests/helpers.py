"""Signed gateway requests in each gateway's real format, and small API helpers.

Stripe and Standard Webhooks requests are signed with the official SDK helpers; Razorpay
has no signing helper in its SDK, so plain HMAC-SHA256 of the body, as its docs specify.
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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, Event, Order, Payment, Product, Ticket

SECRETS = {
    "jwt": "test-jwt-secret-0123456789abcdef0123456789",
    "razorpay": "rzp_webhook_secret_current",
    "stripe": "whsec_test_stripe_current",
    "standard": "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode(),
}

Request = tuple[bytes, dict[str, str]]


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
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
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


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def effects(sessions: async_sessionmaker[AsyncSession], order_id: str) -> dict[str, int]:
    """What one confirmation must leave exactly once."""
    oid = uuid.UUID(order_id)
    return {
        "paid_payments": await count(
            sessions, Payment, Payment.order_id == oid, Payment.status == "paid"
        ),
        "audit": await count(sessions, AuditEntry, AuditEntry.order_id == oid),
        "tickets": await count(sessions, Ticket, Ticket.order_id == oid),
        "order_paid_events": await count(
            sessions, Event, Event.order_id == oid, Event.type == "OrderPaid"
        ),
        "payment_confirmed_events": await count(
            sessions, Event, Event.order_id == oid, Event.type == "PaymentConfirmed"
        ),
    }


ONE_CONFIRMATION = {
    "paid_payments": 1,
    "audit": 2,
    "tickets": 1,
    "order_paid_events": 1,
    "payment_confirmed_events": 1,
}
NO_CONFIRMATION = {
    "paid_payments": 0,
    "audit": 0,
    "tickets": 0,
    "order_paid_events": 0,
    "payment_confirmed_events": 0,
}


async def assert_checkout_refused_with_nothing_reserved(stack: Any, provider: str) -> None:
    """A gateway that is down at checkout (online mode): 503, and no stock or order taken."""
    sku = f"CONF-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Pass", "unit_amount": 900, "currency": "INR", "stock": 3}
    created = await stack.http.post("/admin/products", json=product, headers=stack.admin)
    assert created.status_code == 201
    for _ in range(2):
        answer = await stack.http.post(
            "/orders",
            json={"items": [{"sku": sku, "quantity": 1}], "provider": provider},
            headers=stack.user(),
        )
        assert answer.status_code == 503 and "nothing was reserved" in answer.json()["detail"]
    async with stack.sessions() as s:
        assert await s.scalar(select(Product.stock).where(Product.sku == sku)) == 3
        assert await s.scalar(select(func.count()).select_from(Order)) == 0
