"""What a gateway sends about an order, in its own shape and signed as it signs: the
confirmation of a payment, a declined or abandoned attempt, and its refund notice. Every
field the gateway's published examples carry is there (`tests.support.signing` builds them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tests.support.signing import (
    razorpay_payment_event,
    razorpay_refund_event,
    razorpay_request,
    standard_request,
    standard_succeeded_event,
    stripe_failed_event,
    stripe_refunded_event,
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
        tx = f"pay_{uuid.uuid4().hex[:14]}"
        return razorpay_request(
            razorpay_payment_event(
                intent, tx, order["amount"], order["currency"], event="payment.failed"
            )
        )
    if provider == "stripe":
        currency = order["currency"].lower()
        return stripe_request(
            stripe_failed_event(intent, order["amount"], currency, cancelled=status != "failed")
        )
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
        return razorpay_request(
            razorpay_refund_event(
                refund_id, tx, amount, order["currency"], succeeded=status == "succeeded"
            )
        )
    if provider == "stripe":
        return stripe_request(
            stripe_refunded_event(tx, order["amount"], order["currency"].lower(), refunded=amount)
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
