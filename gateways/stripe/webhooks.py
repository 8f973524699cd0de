"""Stripe webhooks: `Stripe-Signature: t=...,v1=...`, HMAC-SHA256 over "{t}.{raw body}".

The PaymentIntent id (`pi_...`) is both the intent and the transaction id: an intent succeeds
at most once, and refunds (`charge.refunded`) name it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import stripe

from domain.payments import AttemptEnd, Confirmation, RefundNotice
from domain.statuses import PaymentStatus
from gateways.base import (
    GatewayEvent,
    MalformedEvent,
    SignatureError,
    WebhookAdapter,
    dig,
    hint,
    identifier_at,
    load_json_object,
    money,
    random_id,
    reason,
    text,
)
from gateways.stripe.received import received_field

TOLERANCE_SECONDS = 300
TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
CONFIRMING_EVENTS = ("payment_intent.succeeded",)
ENDING_EVENTS = {
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELLED,
}


class StripeWebhooks(WebhookAdapter):
    name = "stripe"

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Stripe's own `WebhookSignature.verify_header`, tried with each configured secret
        (rotation). Anything it cannot parse is a bad signature (401). It checks only that a
        timestamp is not too old; a timestamp too far in the future is refused here too."""
        header = headers.get("stripe-signature")
        if not header:
            raise SignatureError("missing Stripe-Signature")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("the signed body is not UTF-8") from exc
        for secret in self.secrets:
            try:
                stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
                break
            except stripe.SignatureVerificationError:
                continue
            except (ValueError, TypeError, OverflowError) as exc:
                raise SignatureError("malformed Stripe-Signature") from exc
        else:
            raise SignatureError("Stripe-Signature does not match any configured secret")
        # Verified, so t= parsed as a number; read it as plain ASCII digits for the clock.
        stamps = [v for k, _, v in (i.partition("=") for i in header.split(",")) if k == "t"]
        if not stamps or not TIMESTAMP.fullmatch(stamps[0]):
            raise SignatureError("Stripe-Signature t= is not a plain timestamp")
        if abs(now - int(stamps[0])) > TOLERANCE_SECONDS:
            raise SignatureError("Stripe-Signature timestamp outside the 300 s tolerance")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        data = load_json_object(body)
        event_type = text(data, "type")
        event_id = identifier_at(data, "id")
        if self.livemode is not None and data.get("livemode") is not self.livemode:
            mode = "live" if self.livemode else "test"
            raise MalformedEvent(f"event livemode does not match this server's {mode} mode key")
        intent = ("data", "object")
        if event_type in ENDING_EVENTS:
            intent_id = identifier_at(data, *intent, "id")  # also: the object is an object
            obj = dig(data, *intent)
            error = obj.get("last_payment_error")
            why = error.get("message") if isinstance(error, dict) else None
            end = AttemptEnd(
                provider=self.name,
                intent_id=intent_id,
                status=ENDING_EVENTS[event_type],
                event_id=event_id,
                event_type=event_type,
                reason=reason(why or obj.get("cancellation_reason")),
            )
            return GatewayEvent(event_id, event_type, None, end)
        if event_type == "charge.refunded":
            return self._refunded(data, event_id, event_type)
        if event_type not in CONFIRMING_EVENTS:
            return GatewayEvent(event_id, event_type, None)
        obj = dig(data, *intent)
        received = (received_field(obj) if isinstance(obj, dict) else None) or "amount_received"
        amount, currency = money(data, (*intent, received), (*intent, "currency"), self.name)
        intent_id = identifier_at(data, *intent, "id")
        metadata = data["data"]["object"].get("metadata")
        order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
        confirmation = Confirmation(
            provider=self.name,
            transaction_id=intent_id,
            intent_id=intent_id,
            amount=amount,
            currency=currency,
            event_id=event_id,
            event_type=event_type,
            order_id=hint(order_id),
        )
        return GatewayEvent(event_id, event_type, confirmation)

    def _refunded(self, data: Mapping[str, Any], event_id: str, event_type: str) -> GatewayEvent:
        charge = ("data", "object")
        obj = dig(data, *charge)
        if isinstance(obj, dict) and obj.get("payment_intent") is None:
            # A charge made without a PaymentIntent (the Charges API; Stripe's own fixture
            # has one): never one of ours, and no reason for Stripe to retry it (not 400).
            return GatewayEvent(event_id, event_type, None)
        # amount_refunded: what went back in all (Stripe refunds a charge in parts too).
        amount, currency = money(
            data, (*charge, "amount_refunded"), (*charge, "currency"), self.name
        )
        charge_id = identifier_at(data, *charge, "id")
        notice = RefundNotice(
            provider=self.name,
            transaction_id=identifier_at(data, *charge, "payment_intent"),
            refund_id=f"{charge_id}:{amount}",
            amount=amount,
            currency=currency,
            status="succeeded",
            event_id=event_id,
            event_type=event_type,
        )
        return GatewayEvent(event_id, event_type, None, refund=notice)

    def mint_intent_id(self) -> str:
        return random_id("pi_", 24)
