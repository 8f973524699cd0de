"""Stripe's checkout return: the browser comes back with `payment_intent`; it is looked up at
Stripe, and only a PaymentIntent that has succeeded is confirmed, for what Stripe received.

Returns do not reach Stripe one for one: an intent's answer is kept for `CACHE_SECONDS`, and
returns for it meanwhile (a reload, a double click, a script) share that answer and the one
look-up under way. A payment already stored as paid is not looked up at all (`api.payments`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from domain.payments import Confirmation
from gateways.api import GatewayRefused
from gateways.checkout import Attempt, CheckoutReturn, NotSucceeded, NotVerifiable, UnknownIntent
from gateways.stripe.api import Intent, StripeApi

CACHE_SECONDS = 2.0  # short: a customer who pays right after an early return is told soon
CACHE_SIZE = 4096  # intents remembered at most (the oldest forgotten first)


class IntentCache:
    """An intent's look-up, shared for `seconds` (a failed one is not kept)."""

    def __init__(
        self,
        seconds: float = CACHE_SECONDS,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self.entries: OrderedDict[str, tuple[float, asyncio.Future[Intent]]] = OrderedDict()

    async def get(self, intent_id: str, fetch: Callable[[], asyncio.Future[Intent]]) -> Intent:
        now = self.clock()
        kept = self.entries.get(intent_id)
        if kept is None or kept[0] <= now:
            kept = (now + self.seconds, fetch())
            self.entries[intent_id] = kept
            self.entries.move_to_end(intent_id)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        try:
            # shield: one caller going away does not cancel the look-up the others wait for
            return await asyncio.shield(kept[1])
        except Exception:
            if self.entries.get(intent_id) is kept:
                del self.entries[intent_id]
            raise


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
        self.cache = IntentCache()

    def intent_id(self, body: BaseModel) -> str:
        assert isinstance(body, StripeReturnIn)
        return body.payment_intent

    def transaction_id(self, body: BaseModel) -> str | None:
        return self.intent_id(body)  # a PaymentIntent is its own transaction

    def check(self, body: BaseModel) -> None:
        if self.api is None:
            raise NotVerifiable("offline mode (no Stripe API key): returns are not verified")

    async def confirmation(self, body: BaseModel, attempt: Attempt, now: float) -> Confirmation:
        assert isinstance(body, StripeReturnIn) and self.api is not None
        api, intent_id = self.api, body.payment_intent
        try:
            intent = await self.cache.get(
                intent_id, lambda: asyncio.ensure_future(api.intent(intent_id))
            )
        except GatewayRefused as exc:
            raise UnknownIntent("no such PaymentIntent at Stripe") from exc
        if intent.status != "succeeded":
            raise NotSucceeded(f"the PaymentIntent has not succeeded (it is {intent.status})")
        return intent.confirmation(
            f"return:{intent.id}", "payment_intent.verified", attempt.order_id, now
        )
