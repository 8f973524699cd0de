"""Razorpay webhooks: `X-Razorpay-Signature` is hex HMAC-SHA256 of the raw body.

`payment.captured` and `order.paid` both carry the payment entity; its id (`pay_...`) is the
transaction id, so the two events for one payment meet in one workflow. In online mode
(`captures`: the API keys are configured) `payment.authorized` is a confirmation that needs
capturing, in that same workflow; an entity that already says `captured` (auto-capture, as
Razorpay's own examples show) is a capture. Offline it is `ignored`: nothing could capture it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from domain.payments import AttemptEnd, Confirmation, RefundNotice
from domain.statuses import PaymentStatus
from gateways.base import (
    GatewayEvent,
    SignatureError,
    WebhookAdapter,
    constant_time_in,
    dig,
    identifier_at,
    load_json_object,
    money,
    random_id,
    reason,
    text,
)

CONFIRMING_EVENTS = ("payment.captured", "order.paid")
AUTHORIZED = "payment.authorized"
REFUND_EVENTS = {"refund.processed": "succeeded", "refund.failed": "failed"}


class RazorpayWebhooks(WebhookAdapter):
    name = "razorpay"
    captures = False  # online mode: an authorization is captured through the API

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        signature = headers.get("x-razorpay-signature")
        if not signature:
            raise SignatureError("missing X-Razorpay-Signature")
        expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in self.secrets]
        if not constant_time_in(signature.strip().lower(), expected):
            raise SignatureError("X-Razorpay-Signature does not match any configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        data = load_json_object(body)
        event_type = text(data, "event")
        event_id = headers.get("x-razorpay-event-id") or ""
        payment = ("payload", "payment", "entity")
        if event_type == "payment.failed":
            intent_id = identifier_at(data, *payment, "order_id")  # also: entity is an object
            entity = dig(data, *payment)
            end = AttemptEnd(
                provider=self.name,
                intent_id=intent_id,
                status=PaymentStatus.FAILED,
                event_id=event_id,
                event_type=event_type,
                reason=reason(entity.get("error_description") or entity.get("error_code")),
            )
            return GatewayEvent(event_id, event_type, None, end)
        if event_type in REFUND_EVENTS:
            refund = ("payload", "refund", "entity")
            amount, currency = money(data, (*refund, "amount"), (*refund, "currency"), self.name)
            notice = RefundNotice(
                provider=self.name,
                transaction_id=identifier_at(data, *refund, "payment_id"),
                refund_id=identifier_at(data, *refund, "id"),
                amount=amount,
                currency=currency,
                status=REFUND_EVENTS[event_type],
                event_id=event_id,
                event_type=event_type,
            )
            return GatewayEvent(event_id, event_type, None, refund=notice)
        authorized = event_type == AUTHORIZED and self.captures
        if event_type not in CONFIRMING_EVENTS and not authorized:
            return GatewayEvent(event_id, event_type, None)
        amount, currency = money(data, (*payment, "amount"), (*payment, "currency"), self.name)
        # An authorization whose entity says it was captured already needs no capture.
        needs_capture = authorized and dig(data, *payment).get("status") != "captured"
        confirmation = Confirmation(
            provider=self.name,
            transaction_id=identifier_at(data, *payment, "id"),
            intent_id=identifier_at(data, *payment, "order_id"),
            amount=amount,
            currency=currency,
            event_id=event_id,
            event_type=event_type,
            needs_capture=needs_capture,
        )
        return GatewayEvent(event_id, event_type, confirmation)

    def mint_intent_id(self) -> str:
        return random_id("order_", 14)
