"""Testpay: a fourth gateway that lives only in the tests, to prove a gateway is one package.

It is everything a gateway is to paysaga (webhooks with their own signature, an API that
creates and cancels intents, looks payments up and refunds, a checkout return) and touches no
product file: `registry.register(Testpay)` installs it. Its "gateway" is `LEDGER`, an
in-process record of intents, payments and refunds that the tests pay into and read back.
Signature: `X-Testpay-Signature` = hex HMAC-SHA256 of the raw body with a configured secret.
Events: `charge.succeeded` and `refund.completed`, with `{id, intent, amount, currency}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from domain.payments import Confirmation, RefundNotice
from gateways.api import (
    NO_METRICS,
    CheckoutIntent,
    GatewayMetrics,
    GatewayRefund,
    GatewayRefused,
)
from gateways.base import (
    GatewayEvent,
    SignatureError,
    WebhookAdapter,
    constant_time_in,
    identifier_at,
    load_json_object,
    money,
    random_id,
    text,
)
from gateways.checkout import Attempt, CheckoutReturn, NotSucceeded, UnknownIntent
from gateways.registry import Gateway, env_text

NAME = "testpay"


@dataclass
class Ledger:
    """Testpay's side of the money: what a real gateway's dashboard would show."""

    intents: dict[str, dict[str, object]] = field(default_factory=dict)
    payments: dict[str, dict[str, object]] = field(default_factory=dict)  # by intent id
    refunds: dict[str, dict[str, object]] = field(default_factory=dict)  # by idempotency key

    def pay(self, intent_id: str) -> str:
        intent = self.intents[intent_id]
        payment_id = random_id("tpch_", 16)
        self.payments[intent_id] = {"id": payment_id, **intent}
        intent["status"] = "succeeded"
        return payment_id


LEDGER = Ledger()


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event(kind: str, payment_id: str, intent_id: str, amount: int, currency: str) -> bytes:
    data = {"id": payment_id, "intent": intent_id, "amount": amount, "currency": currency}
    return json.dumps({"type": kind, "data": data}).encode()


class TestpayWebhooks(WebhookAdapter):
    name = NAME

    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        expected = [sign(body, secret) for secret in self.secrets]
        if not constant_time_in(headers.get("x-testpay-signature", "").lower(), expected):
            raise SignatureError("X-Testpay-Signature does not match any configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        data = load_json_object(body)
        kind = text(data, "type")
        payment_id = identifier_at(data, "data", "id")
        amount, currency = money(data, ("data", "amount"), ("data", "currency"))
        if kind == "refund.completed":
            notice = RefundNotice(
                NAME,
                payment_id,
                f"re_{payment_id}",
                amount,
                currency,
                "succeeded",
                payment_id,
                kind,
            )
            return GatewayEvent(payment_id, kind, None, refund=notice)
        if kind != "charge.succeeded":
            return GatewayEvent(payment_id, kind, None)
        confirmation = Confirmation(
            provider=NAME,
            transaction_id=payment_id,
            intent_id=identifier_at(data, "data", "intent"),
            amount=amount,
            currency=currency,
            event_id=payment_id,
            event_type=kind,
        )
        return GatewayEvent(payment_id, kind, confirmation)

    def mint_intent_id(self) -> str:
        return random_id("tpi_", 16)


class TestpayApi:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        intent_id = random_id("tpi_", 16)
        self.ledger.intents[intent_id] = {
            "order_id": order_id,
            "amount": amount,
            "currency": currency,
            "status": "open",
        }
        return CheckoutIntent(intent_id, client_secret=f"{intent_id}_secret")

    async def cancel_intent(self, intent_id: str) -> None:
        self.ledger.intents[intent_id]["status"] = "cancelled"

    async def look_up(self, order_id: str, intent_id: str, now: float) -> Confirmation | str:
        paid = self.ledger.payments.get(intent_id)
        if paid is None:
            return str(self.ledger.intents.get(intent_id, {}).get("status", "unknown"))
        return Confirmation(
            provider=NAME,
            transaction_id=str(paid["id"]),
            intent_id=intent_id,
            amount=int(str(paid["amount"])),
            currency=str(paid["currency"]),
            event_id=f"lookup:{paid['id']}",
            event_type="charge.looked_up",
            order_id=order_id,
            received_at=now,
        )

    async def refund(
        self, transaction_id: str, amount: int, currency: str, key: str
    ) -> GatewayRefund:
        if not any(p["id"] == transaction_id for p in self.ledger.payments.values()):
            raise GatewayRefused(f"no charge {transaction_id}")
        refund = {"id": f"tpre_{key}", "charge": transaction_id, "amount": amount}
        self.ledger.refunds.setdefault(key, refund | {"currency": currency})
        return GatewayRefund(f"tpre_{key}", "succeeded", amount, currency)


class TestpayReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: Annotated[str, StringConstraints(pattern=r"^tpi_[A-Za-z0-9]{16}$")]


class TestpayReturn(CheckoutReturn):
    body = TestpayReturnIn

    def __init__(self, api: TestpayApi) -> None:
        self.api = api

    def intent_id(self, body: BaseModel) -> str:
        assert isinstance(body, TestpayReturnIn)
        return body.intent

    def check(self, body: BaseModel) -> None:
        """Proven by the look-up alone, as Stripe's return is."""

    async def confirmation(self, body: BaseModel, attempt: Attempt, now: float) -> Confirmation:
        assert isinstance(body, TestpayReturnIn)
        found = await self.api.look_up(attempt.order_id, body.intent, now)
        if isinstance(found, Confirmation):
            return found
        if found == "unknown":
            raise UnknownIntent("no such intent at Testpay")
        raise NotSucceeded(f"the intent has not succeeded (it is {found})")


class Testpay(Gateway):
    name = NAME
    adapter = TestpayWebhooks

    def __init__(self, env: Mapping[str, str], metrics: GatewayMetrics = NO_METRICS) -> None:
        super().__init__(env, metrics)
        if env_text(env, "PAYSAGA_TESTPAY_ONLINE"):
            api = TestpayApi(LEDGER)
            self.api, self.checkout = api, TestpayReturn(api)
