"""Razorpay's checkout return: `razorpay_order_id`, `razorpay_payment_id` and
`razorpay_signature`, the hex HMAC-SHA256 of `"{order_id}|{payment_id}"` with the API key
secret: proof that this payment was *authorized* for this Razorpay order, not that money was
captured. Online the payment is looked up: captured, it confirms; authorized, the saga
captures it before confirming. With the key secret alone nothing can tell, so the return
waits for the `payment.captured` webhook (202)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from domain.payments import Confirmation
from gateways.api import GatewayRefused
from gateways.base import SignatureError
from gateways.checkout import (
    Attempt,
    AwaitingWebhook,
    CheckoutReturn,
    NotSucceeded,
    NotVerifiable,
    UnknownIntent,
)
from gateways.razorpay.api import RazorpayApi

RazorpayId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
HexSignature = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class RazorpayReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    razorpay_order_id: RazorpayId
    razorpay_payment_id: RazorpayId
    razorpay_signature: HexSignature


def checkout_signature(key_secret: str, order_id: str, payment_id: str) -> str:
    message = f"{order_id}|{payment_id}".encode()
    return hmac.new(key_secret.encode(), message, hashlib.sha256).hexdigest()


class RazorpayReturn(CheckoutReturn):
    body = RazorpayReturnIn

    def __init__(self, key_secret: str | None, api: RazorpayApi | None = None) -> None:
        self.key_secret = key_secret
        self.api = api

    def intent_id(self, body: BaseModel) -> str:
        assert isinstance(body, RazorpayReturnIn)
        return body.razorpay_order_id

    def transaction_id(self, body: BaseModel) -> str | None:
        assert isinstance(body, RazorpayReturnIn)
        return body.razorpay_payment_id

    def check(self, body: BaseModel) -> None:
        assert isinstance(body, RazorpayReturnIn)
        if not self.key_secret:
            raise NotVerifiable(
                "offline mode (no Razorpay API keys): checkout returns are not verified"
            )
        expected = checkout_signature(
            self.key_secret, body.razorpay_order_id, body.razorpay_payment_id
        )
        if not hmac.compare_digest(expected, body.razorpay_signature.lower()):
            raise SignatureError("razorpay_signature does not match this order and payment")

    async def confirmation(self, body: BaseModel, attempt: Attempt, now: float) -> Confirmation:
        assert isinstance(body, RazorpayReturnIn)
        if self.api is None:
            raise AwaitingWebhook(
                "the signature proves an authorization; the payment is confirmed once"
                " Razorpay reports it captured"
            )
        try:
            payment = await self.api.payment(body.razorpay_payment_id)
        except GatewayRefused as exc:  # "The id provided does not exist"
            raise UnknownIntent(f"Razorpay: {exc}") from exc
        if payment.order_id != body.razorpay_order_id:
            raise UnknownIntent("Razorpay has no such payment for this order")
        if payment.status not in ("authorized", "captured"):
            raise NotSucceeded(f"the Razorpay payment is {payment.status}")
        return Confirmation(
            provider="razorpay",
            transaction_id=payment.id,
            intent_id=body.razorpay_order_id,
            amount=payment.amount,  # what Razorpay holds: the saga checks it against the order
            currency=payment.currency,
            event_id=f"checkout:{payment.id}",
            event_type="checkout.verified",
            order_id=attempt.order_id,
            received_at=now,
            needs_capture=payment.status == "authorized",
        )
