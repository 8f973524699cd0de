"""Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, `whsec_` secrets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from domain.payments import AttemptEnd, Confirmation, PaymentStatus
from gateways.base import (
    Gateway,
    GatewayEvent,
    SignatureError,
    constant_time_in,
    hint,
    identifier_at,
    load_json_object,
    money,
    random_id,
    reason,
    text,
)

TOLERANCE_SECONDS = 300
CONFIRMING_EVENTS = ("payment.succeeded",)
ENDING_EVENTS = {
    "payment.failed": PaymentStatus.FAILED,
    "payment.cancelled": PaymentStatus.CANCELLED,
}


def _key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise SignatureError("a configured whsec_ secret is not valid base64") from exc


class StandardWebhooksGateway(Gateway):
    name = "standard"

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature_header = headers.get("webhook-signature")
        if not msg_id or not timestamp or not signature_header:
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
        if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
            raise SignatureError("webhook-timestamp missing or outside the 300 s tolerance")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode()
            for s in self.secrets
        ]
        offered = [
            sig
            for version, _, sig in (p.partition(",") for p in signature_header.split())
            if version == "v1"
        ]
        if not any(constant_time_in(sig, expected) for sig in offered):
            raise SignatureError("webhook-signature does not match any configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        data = load_json_object(body)
        event_type = text(data, "type")
        event_id = headers.get("webhook-id") or ""
        if event_type in ENDING_EVENTS:
            end = AttemptEnd(
                provider=self.name,
                intent_id=identifier_at(data, "data", "intent_id"),
                status=ENDING_EVENTS[event_type],
                event_id=event_id,
                event_type=event_type,
                reason=reason(data["data"].get("reason")),
            )
            return GatewayEvent(event_id, event_type, None, end)
        if event_type not in CONFIRMING_EVENTS:
            return GatewayEvent(event_id, event_type, None)
        amount, currency = money(data, ("data", "amount"), ("data", "currency"))
        confirmation = Confirmation(
            provider=self.name,
            transaction_id=identifier_at(data, "data", "transaction_id"),
            intent_id=identifier_at(data, "data", "intent_id"),
            amount=amount,
            currency=currency,
            event_id=event_id,
            event_type=event_type,
            order_id=hint(data["data"].get("order_id")),
        )
        return GatewayEvent(event_id, event_type, confirmation)

    def mint_intent_id(self) -> str:
        return random_id("int_", 24)
