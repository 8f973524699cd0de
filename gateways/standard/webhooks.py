"""Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, `whsec_` secrets."""

from __future__ import annotations

import re
from collections.abc import Mapping

import standardwebhooks
from standardwebhooks.webhooks import WebhookVerificationError

from domain.payments import AttemptEnd, Confirmation, RefundNotice
from domain.statuses import PaymentStatus
from gateways.base import (
    GatewayEvent,
    SignatureError,
    WebhookAdapter,
    hint,
    identifier_at,
    load_json_object,
    money,
    random_id,
    reason,
    text,
)

TOLERANCE_SECONDS = 300
TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
CONFIRMING_EVENTS = ("payment.succeeded",)
REFUND_EVENTS = {"refund.succeeded": "succeeded", "refund.failed": "failed"}
ENDING_EVENTS = {
    "payment.failed": PaymentStatus.FAILED,
    "payment.cancelled": PaymentStatus.CANCELLED,
}


class StandardWebhooks(WebhookAdapter):
    name = "standard"

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """The standardwebhooks library verifies, tried with each configured secret (rotation).
        Before it, the timestamp must be plain digits within the tolerance of `now`; anything
        the library cannot parse is a bad signature (401), never an error of ours."""
        timestamp = headers.get("webhook-timestamp") or ""
        if not TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
            raise SignatureError("webhook-timestamp missing or outside the 300 s tolerance")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("the signed body is not UTF-8") from exc
        plain = {
            k: headers.get(k) or ""
            for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        for secret in self.secrets:
            try:
                standardwebhooks.Webhook(secret).verify(payload, plain, json_parse=False)
                return
            except WebhookVerificationError:
                continue
            except Exception as exc:  # bad base64 or pairs; an empty or unusable secret
                raise SignatureError(
                    f"malformed webhook signature headers or secret: {exc}"[:200]
                ) from exc
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
        if event_type in REFUND_EVENTS:
            amount, currency = money(data, ("data", "amount"), ("data", "currency"))
            notice = RefundNotice(
                provider=self.name,
                transaction_id=identifier_at(data, "data", "transaction_id"),
                refund_id=identifier_at(data, "data", "refund_id"),
                amount=amount,
                currency=currency,
                status=REFUND_EVENTS[event_type],
                event_id=event_id,
                event_type=event_type,
            )
            return GatewayEvent(event_id, event_type, None, refund=notice)
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
