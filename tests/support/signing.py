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


# Razorpay's shapes, field for field, as its SDK's own test mocks
# (razorpay-python tests/mocks/fake_payment_authorized_webhook.json, fake_refund.json,
# fake_order.json) and its documented sample payloads carry them, with the odd ones kept:
# nulls for what does not apply, `notes` an empty JSON *array* when there are none (PHP's
# empty array) but an object when there are, nested `acquirer_data` and `card` objects, and a
# `payment.authorized` whose entity may already say `captured` (auto-capture reports both).
RAZORPAY_ACCOUNT = "acc_BFQ7uQEaa7j2z7"


def razorpay_payment_entity(
    intent_id: str | None,
    transaction_id: str,
    amount: int,
    currency: str = "INR",
    status: str = "captured",
    method: str = "card",
) -> dict[str, Any]:
    captured = status in ("captured", "refunded")
    failed = status == "failed"
    card = {
        "id": f"card_{str(transaction_id)[-14:]}",
        "entity": "card",
        "name": "Gaurav Kumar",
        "last4": "1111",
        "network": "Visa",
        "type": "debit",
        "issuer": None,
        "international": False,
        "emi": False,
        "sub_type": "consumer",
        "token_iin": None,
    }
    return {
        "id": transaction_id,
        "entity": "payment",
        "amount": amount,
        "currency": currency,
        "base_amount": amount,
        "status": status,
        "order_id": intent_id,
        "invoice_id": None,
        "international": False,
        "method": method,
        "amount_refunded": amount if status == "refunded" else 0,
        "amount_transferred": 0,
        "refund_status": "full" if status == "refunded" else None,
        "captured": captured,
        "description": "Conference pass",
        "card_id": card["id"] if method == "card" else None,
        "card": card if method == "card" else None,
        "bank": None,
        "wallet": None,
        "vpa": "gaurav.kumar@exampleupi" if method == "upi" else None,
        "upi": {"payer_account_type": "bank_account", "vpa": "gaurav.kumar@exampleupi"}
        if method == "upi"
        else None,
        "email": "gaurav.kumar@example.com",
        "contact": "+919000090000",
        "customer_id": None,
        "token_id": None,
        "notes": [],
        # Razorpay's fee and its tax exist once money is captured; null before.
        "fee": 1180 if captured else None,
        "tax": 180 if captured else None,
        "error_code": "BAD_REQUEST_ERROR" if failed else None,
        "error_description": "Payment failed because the card was declined" if failed else None,
        "error_source": "customer" if failed else None,
        "error_step": "payment_authorization" if failed else None,
        "error_reason": "payment_failed" if failed else None,
        "acquirer_data": {"auth_code": None if failed else "828553", "rrn": None},
        "emi_plan": None,
        "reward": None,
        "created_at": int(time.time()) - 5,
    }


def razorpay_order_entity(
    intent_id: str, amount: int, currency: str = "INR", paid: bool = True
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "entity": "order",
        "amount": amount,
        "amount_paid": amount if paid else 0,
        "amount_due": 0 if paid else amount,
        "currency": currency,
        "receipt": str(uuid.uuid4()),
        "offer_id": None,
        "status": "paid" if paid else "attempted",
        "attempts": 1,
        "notes": [],
        "created_at": int(time.time()) - 60,
    }


def razorpay_refund_entity(
    refund_id: str, transaction_id: str, amount: int, currency: str, status: str
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "entity": "refund",
        "amount": amount,
        "currency": currency,
        "payment_id": transaction_id,
        "notes": {"reason": "cannot attend"},
        "receipt": None,
        "acquirer_data": {"arn": None},
        "created_at": int(time.time()),
        "batch_id": None,
        "status": status,
        "speed_processed": "normal",
        "speed_requested": "optimum",
    }


def razorpay_event(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The envelope: its id travels in `X-Razorpay-Event-Id`, not in the body."""
    return {
        "entity": "event",
        "account_id": RAZORPAY_ACCOUNT,
        "event": event,
        "contains": list(payload),
        "payload": payload,
        "created_at": int(time.time()),
    }


def razorpay_payment_event(
    intent_id: str,
    transaction_id: str,
    amount: int,
    currency: str = "INR",
    event: str = "payment.captured",
    status: str | None = None,
) -> dict[str, Any]:
    """`payment.*` and `order.paid`, the payment entity in full. `status`: the entity's own
    (by default what the event says: `authorized`, `failed`, else `captured`); a
    `payment.authorized` with `status="captured"` is the shape Razorpay's SDK mock has."""
    if status is None:
        status = {"payment.authorized": "authorized", "payment.failed": "failed"}.get(
            event, "captured"
        )
    payment = razorpay_payment_entity(intent_id, transaction_id, amount, currency, status)
    payload: dict[str, Any] = {"payment": {"entity": payment}}
    if event == "order.paid":
        payload["order"] = {"entity": razorpay_order_entity(intent_id, amount, currency)}
    return razorpay_event(event, payload)


def razorpay_refund_event(
    refund_id: str, transaction_id: str, amount: int, currency: str, succeeded: bool = True
) -> dict[str, Any]:
    """`refund.processed` / `refund.failed`: the refund and, as Razorpay sends it, its payment."""
    refund = razorpay_refund_entity(
        refund_id, transaction_id, amount, currency, "processed" if succeeded else "failed"
    )
    payment = razorpay_payment_entity(
        f"order_{str(transaction_id)[-14:]}",
        transaction_id,
        amount,
        currency,
        "refunded" if succeeded else "captured",
    )
    return razorpay_event(
        "refund.processed" if succeeded else "refund.failed",
        {"refund": {"entity": refund}, "payment": {"entity": payment}},
    )


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


# Stripe's shapes, field for field, as its OpenAPI fixtures (stripe/openapi
# openapi/fixtures3.json: `payment_intent`, `charge`, `event`) carry them, with realistic
# values and the odd ones kept: nulls, empty objects, nested lists, `request` with null ids.
# A PaymentIntent names its charge by `latest_charge` since API version 2022-11-15 and, on
# older versions, lists its charges in full (`charges`).
STRIPE_API_VERSION = "2024-06-20"
STRIPE_OLD_API_VERSION = "2020-08-27"  # before 2022-11-15: `charges`, no `latest_charge`


def stripe_charge(
    intent_id: str | None,
    amount: int,
    currency: str = "eur",
    refunded: int = 0,
    charge_id: str | None = None,
) -> dict[str, Any]:
    """A charge; `intent_id` None is one made without a PaymentIntent (the Charges API), as
    Stripe's own fixture has it."""
    charge_id = charge_id or f"ch_{uuid.uuid4().hex[:24]}"
    refunds = (
        [
            {
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "object": "refund",
                "amount": refunded,
                "balance_transaction": f"txn_{uuid.uuid4().hex[:24]}",
                "charge": charge_id,
                "created": int(time.time()),
                "currency": currency,
                "destination_details": {"card": {"reference_status": "pending", "type": "refund"}},
                "metadata": {},
                "payment_intent": intent_id,
                "reason": "requested_by_customer",
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
        ]
        if refunded
        else []
    )
    address = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": f"txn_{uuid.uuid4().hex[:24]}",
        "billing_details": {
            "address": address,
            "email": None,
            "name": "Jenny Rosen",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "PAYSAGA",
        "captured": True,
        "created": int(time.time()) - 5,
        "currency": currency,
        "customer": None,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 32,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": intent_id,
        "payment_method": f"pm_{uuid.uuid4().hex[:24]}",
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "brand": "visa",
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "exp_month": 8,
                "exp_year": 2030,
                "extended_authorization": {"status": "disabled"},
                "fingerprint": "AOB934RVNwzk6xtn",
                "funding": "credit",
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": "4242",
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": "visa",
                "network_token": {"used": False},
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{uuid.uuid4().hex}",
        "refunded": refunded == amount,
        "refunds": {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "total_count": len(refunds),
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def stripe_intent(
    intent_id: str,
    amount: int,
    currency: str = "eur",
    status: str = "succeeded",
    api_version: str = STRIPE_API_VERSION,
) -> dict[str, Any]:
    """A PaymentIntent in `status`; a succeeded one has its charge (by id, or listed on an
    old API version), a failed one its `last_payment_error` in full."""
    succeeded = status == "succeeded"
    charge = stripe_charge(intent_id, amount, currency) if succeeded else None
    intent: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:24]}",
        "confirmation_method": "automatic",
        "created": int(time.time()) - 60,
        "currency": currency,
        "customer": None,
        "description": None,
        "invoice": None,
        "last_payment_error": None,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": charge["payment_method"] if charge else None,
        "payment_method_configuration_details": {"id": "pmc_1PgafyB7WZ01zgkW", "parent": None},
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            },
            "link": {"persistent_token": None},
        },
        "payment_method_types": ["card", "link"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    if api_version < "2022-11-15":
        data = [charge] if charge else []
        intent["charges"] = {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/charges?payment_intent={intent_id}",
        }
    else:
        intent["latest_charge"] = charge["id"] if charge else None
    return intent


def stripe_event(
    event_type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
    api_version: str = STRIPE_API_VERSION,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def stripe_succeeded_event(
    intent_id: str, amount: int, currency: str = "eur", api_version: str = STRIPE_API_VERSION
) -> dict[str, Any]:
    intent = stripe_intent(intent_id, amount, currency, api_version=api_version)
    return stripe_event("payment_intent.succeeded", intent, api_version=api_version)


def stripe_failed_event(
    intent_id: str, amount: int, currency: str = "eur", cancelled: bool = False
) -> dict[str, Any]:
    """`payment_intent.payment_failed` (a declined card, its error in full) or
    `payment_intent.canceled` (abandoned)."""
    if cancelled:
        intent = stripe_intent(intent_id, amount, currency, "canceled")
        intent |= {"canceled_at": int(time.time()), "cancellation_reason": "abandoned"}
        return stripe_event("payment_intent.canceled", intent)
    intent = stripe_intent(intent_id, amount, currency, "requires_payment_method")
    charge = stripe_charge(intent_id, amount, currency)
    intent["latest_charge"] = charge["id"]
    intent["last_payment_error"] = {
        "charge": charge["id"],
        "code": "card_declined",
        "decline_code": "generic_decline",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card was declined.",
        "param": None,
        "payment_method": {
            "id": charge["payment_method"],
            "object": "payment_method",
            "billing_details": charge["billing_details"],
            "card": {"brand": "visa", "last4": "0002", "exp_month": 8, "exp_year": 2030},
            "created": int(time.time()),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
        },
        "type": "card_error",
    }
    return stripe_event("payment_intent.payment_failed", intent)


def stripe_refunded_event(
    intent_id: str | None, amount: int, currency: str = "eur", refunded: int | None = None
) -> dict[str, Any]:
    """`charge.refunded`, with what the charge looked like before (`previous_attributes`)."""
    refunded = amount if refunded is None else refunded
    charge = stripe_charge(intent_id, amount, currency, refunded=refunded)
    before = {
        "amount_refunded": 0,
        "refunded": False,
        "refunds": {"data": [], "total_count": 0},
    }
    return stripe_event("charge.refunded", charge, previous_attributes=before)


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
