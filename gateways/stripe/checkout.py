"""Stripe's checkout return: the browser comes back with `payment_intent`; it is looked up at
Stripe, and only a PaymentIntent that has succeeded is confirmed, for what Stripe received."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from domain.payments import Confirmation
from gateways.api import GatewayRefused
from gateways.checkout import Attempt, CheckoutReturn, NotSucceeded, NotVerifiable, UnknownIntent
from gateways.stripe.api import StripeApi


class StripeReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_intent: Annotated[str, StringConstraints(pattern=r"^pi_[A-Za-z0-9_]{1,250}$")]
    # Stripe's return URL carries these too; a front end may forward the whole query. Not
    # trusted: the intent is looked up at Stripe.
    payment_intent_client_secret: Annotated[str, StringConstraints(max_length=300)] | None = None
    redirect_status: Annotated[str, StringConstraints(max_length=40)] | None = None


class StripeReturn(CheckoutReturn):
    body = StripeReturnIn

    def __init__(self, api: StripeApi | None) -> None:
        self.api = api

    def intent_id(self, body: BaseModel) -> str:
        assert isinstance(body, StripeReturnIn)
        return body.payment_intent

    def check(self, body: BaseModel) -> None:
        if self.api is None:
            raise NotVerifiable("offline mode (no Stripe API key): returns are not verified")

    async def confirmation(self, body: BaseModel, attempt: Attempt, now: float) -> Confirmation:
        assert isinstance(body, StripeReturnIn) and self.api is not None
        try:
            intent = await self.api.intent(body.payment_intent)
        except GatewayRefused as exc:
            raise UnknownIntent("no such PaymentIntent at Stripe") from exc
        if intent.status != "succeeded":
            raise NotSucceeded(f"the PaymentIntent has not succeeded (it is {intent.status})")
        return intent.confirmation(
            f"return:{intent.id}", "payment_intent.verified", attempt.order_id, now
        )
