"""Stripe webhooks: `Stripe-Signature: t=...,v1=...`, HMAC-SHA256 over "{t}.{raw body}".

The PaymentIntent id (`pi_...`) is both the intent and the transaction id: an intent succeeds
at most once, and refunds (`charge.refunded`) name it too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from domain.payments import AttemptEnd, Confirmation, PaymentStatus
from gateways.base import (
    Gateway,
    GatewayEvent,
    SignatureError,
    constant_time_in,
    dig,
    hint,
    identifier_at,
    load_json_object,
    money,
    random_id,
    reason,
    text,
)

TOLERANCE_SECONDS = 300
CONFIRMING_EVENTS = ("payment_intent.succeeded",)
ENDING_EVENTS = {
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELLED,
}


class StripeGateway(Gateway):
    name = "stripe"

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = headers.get("stripe-signature")
        if not header:
            raise SignatureError("missing Stripe-Signature")
        timestamp: int | None = None
        signatures: list[str] = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t" and value.isdigit():
                timestamp = int(value)
            elif key == "v1":
                signatures.append(value)
        if timestamp is None or not signatures:
            raise SignatureError("Stripe-Signature lacks t= or v1=")
        if abs(now - timestamp) > TOLERANCE_SECONDS:
            raise SignatureError("Stripe-Signature timestamp outside the 300 s tolerance")
        signed = str(timestamp).encode() + b"." + body
        expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in self.secrets]
        if not any(constant_time_in(sig, expected) for sig in signatures):
            raise SignatureError("Stripe-Signature does not match any configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        data = load_json_object(body)
        event_type = text(data, "type")
        event_id = identifier_at(data, "id")
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
        if event_type not in CONFIRMING_EVENTS:
            return GatewayEvent(event_id, event_type, None)
        # amount_received is what was actually captured, not what was asked for.
        amount, currency = money(data, (*intent, "amount_received"), (*intent, "currency"))
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

    def mint_intent_id(self) -> str:
        return random_id("pi_", 24)
