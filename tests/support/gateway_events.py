"""What a gateway sends about an order, in its own shape and signed as it signs: the
confirmation of a payment, a declined or abandoned attempt, and its refund notice."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.support.signing import (
    razorpay_payment_event,
    razorpay_request,
    standard_request,
    standard_succeeded_event,
    stripe_request,
    stripe_succeeded_event,
)


def signed_confirmation(
    provider: str, order: dict[str, Any], transaction_id: str, amount: int | None = None
) -> tuple[bytes, dict[str, str]]:
    intent = order["payment"]["intent_id"]
    paid = order["amount"] if amount is None else amount
    if provider == "razorpay":
        return razorpay_request(
            razorpay_payment_event(intent, transaction_id, paid, order["currency"])
        )
    if provider == "stripe":
        return stripe_request(stripe_succeeded_event(intent, paid, order["currency"].lower()))
    return standard_request(
        standard_succeeded_event(intent, transaction_id, paid, order["currency"])
    )


def transaction_of(provider: str, order: dict[str, Any], transaction_id: str) -> str:
    # Stripe's transaction is its PaymentIntent.
    return order["payment"]["intent_id"] if provider == "stripe" else transaction_id


def failed(
    provider: str, order: dict[str, Any], status: str = "failed"
) -> tuple[bytes, dict[str, str]]:
    """The gateway's own event for a declined (or, `cancelled`, abandoned) attempt."""
    intent = order["payment"]["intent_id"]
    if provider == "razorpay":
        event = razorpay_payment_event(intent, f"pay_{uuid.uuid4().hex[:14]}", order["amount"])
        event["event"] = "payment.failed"
        event["payload"]["payment"]["entity"] |= {
            "status": "failed",
            "captured": False,
            "error_code": "BAD_REQUEST_ERROR",
            "error_description": "Payment failed because the card was declined",
        }
        return razorpay_request(event)
    if provider == "stripe":
        event = stripe_succeeded_event(intent, order["amount"], order["currency"].lower())
        obj = event["data"]["object"]
        if status == "failed":
            event["type"] = "payment_intent.payment_failed"
            obj |= {
                "status": "requires_payment_method",
                "amount_received": 0,
                "last_payment_error": {
                    "code": "card_declined",
                    "message": "Your card was declined.",
                },
            }
        else:
            event["type"] = "payment_intent.canceled"
            obj |= {"status": "canceled", "amount_received": 0, "cancellation_reason": "abandoned"}
        return stripe_request(event)
    return standard_request(
        {
            "type": "payment.failed" if status == "failed" else "payment.cancelled",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "transaction_id": f"txn_{uuid.uuid4().hex[:12]}",
                "intent_id": intent,
                "amount": order["amount"],
                "currency": order["currency"],
                "reason": "insufficient_funds",
            },
        }
    )


def refund_notice(
    provider: str, order: dict[str, Any], tx: str, status: str = "succeeded", amount: int = 0
) -> tuple[bytes, dict[str, str]]:
    """The gateway's own refund event, in its documented shape."""
    amount = amount or order["amount"]
    refund_id = f"rfnd_{uuid.uuid4().hex[:14]}"
    if provider == "razorpay":
        event = "refund.processed" if status == "succeeded" else "refund.failed"
        return razorpay_request(
            {
                "entity": "event",
                "account_id": "acc_Test",
                "event": event,
                "contains": ["refund", "payment"],
                "payload": {
                    "refund": {
                        "entity": {
                            "id": refund_id,
                            "entity": "refund",
                            "amount": amount,
                            "currency": order["currency"],
                            "payment_id": tx,
                            "status": "processed" if status == "succeeded" else "failed",
                        }
                    }
                },
                "created_at": int(time.time()),
            }
        )
    if provider == "stripe":
        return stripe_request(
            {
                "id": f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "type": "charge.refunded",
                "created": int(time.time()),
                "data": {
                    "object": {
                        "id": f"ch_{uuid.uuid4().hex[:24]}",
                        "object": "charge",
                        "amount": order["amount"],
                        "amount_refunded": amount,
                        "currency": order["currency"].lower(),
                        "payment_intent": tx,
                        "refunded": amount == order["amount"],
                    }
                },
            }
        )
    return standard_request(
        {
            "type": "refund.succeeded" if status == "succeeded" else "refund.failed",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "refund_id": refund_id,
                "transaction_id": tx,
                "amount": amount,
                "currency": order["currency"],
            },
        }
    )
