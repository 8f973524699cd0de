"""Talking to Stripe's API (online mode: PAYSAGA_STRIPE_API_KEY, PAYSAGA_STRIPE_API_BASE),
with the official SDK: create a PaymentIntent at checkout, look one up, refund one.

Every call has a timeout and the SDK's own retries with an idempotency key, so a retried
create or refund is the same one at Stripe; `gateways.calls` guards, measures and classifies
them. Amounts are converted to Stripe's own units and back (`gateways.currencies`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import stripe

from domain.payments import Confirmation
from gateways.api import (
    NO_METRICS,
    CheckoutIntent,
    GatewayMetrics,
    GatewayRefund,
    GatewayUnavailable,
)
from gateways.calls import Calls, Failure, retry_after
from gateways.currencies import NotRepresentable, from_gateway, to_gateway
from gateways.stripe.received import received_field


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    client_secret: str | None
    order_id: str | None

    def confirmation(
        self, event_id: str, event_type: str, order_id: str, received_at: float
    ) -> Confirmation:
        """A succeeded intent as its webhook would have reported it: for what was received."""
        return Confirmation(
            provider="stripe",
            transaction_id=self.id,
            intent_id=self.id,
            amount=self.amount_received,
            currency=self.currency,
            event_id=event_id,
            event_type=event_type,
            order_id=order_id,
            received_at=received_at,
        )


def _iso(amount: int, currency: str) -> int:
    """Stripe's amount in ISO minor units; one with no exact ISO amount is Stripe failing us
    (it never charges one: `gateways.currencies`)."""
    try:
        return from_gateway("stripe", amount, currency)
    except NotRepresentable as exc:
        raise GatewayUnavailable(f"Stripe: {exc}") from exc


def _intent(pi: Any) -> Intent:
    metadata = pi.metadata.to_dict() if getattr(pi, "metadata", None) else {}
    fields = pi.to_dict()
    field = received_field(fields)
    received = fields[field] if field else 0
    currency = str(pi.currency).upper()
    return Intent(
        id=pi.id,
        status=pi.status,
        amount=_iso(int(pi.amount), currency),
        amount_received=_iso(int(received), currency),
        currency=currency,
        client_secret=getattr(pi, "client_secret", None),
        order_id=metadata.get("order_id"),
    )


def classify(exc: Exception) -> Failure | None:
    """Stripe's errors in the breaker's terms: a 4xx is Stripe answering (refused), a 429 a
    rate limit, a 5xx, a timeout or no connection the gateway failing."""
    if isinstance(exc, stripe.RateLimitError):
        wait = retry_after((exc.headers or {}).get("Retry-After"))
        return Failure("rate_limited", str(exc), wait)
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status
        if status is not None and 400 <= status < 500:
            return Failure("refused", str(exc.user_message or exc))
        return Failure("unavailable", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return Failure("unavailable", f"{type(exc).__name__}: {exc}")
    return None


def fresh(key: str) -> str:
    """A new idempotency key for a request whose first key holds a stored 5xx (see
    `StripeApi`): the old one with a random tail, so logs still tie the two together."""
    return f"{key}:{secrets.token_hex(6)}"


class StripeApi:
    """Stripe's idempotency (https://docs.stripe.com/api/idempotent_requests): "Stripe saves
    the status code and body of the first request made with a given idempotency key after
    endpoint execution begins. Retries with the same key return the saved response, including
    500 errors", for 24 hours. So a key that once got a 500 answers 500 for a day, and the SDK's
    own retries (same key) cannot help: a retry after a server error takes a fresh key, where
    that is safe.
    - create: safe. An intent the failed request may have made was never handed to anyone
      (its client secret was in the lost answer), so nobody can pay it.
    - refund: safe only once Stripe says it holds no refund of the intent (looked up first):
      a fresh key for a refund that did happen would ask for a second one.
    - cancel and look-ups carry no key.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str | None,
        timeout: float = 10.0,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2,
            http_client=stripe.HTTPXClient(timeout=timeout),
        )
        self.calls = Calls("stripe", classify, metrics)

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        # One idempotency key per attempt: a retried request is the same intent, a new
        # attempt a new one (the checkout's key is as it always was).
        key = f"checkout-{order_id}" if attempt == 1 else f"checkout-{order_id}-{attempt}"
        params: stripe.params.PaymentIntentCreateParams = {
            "amount": to_gateway("stripe", amount, currency),
            "currency": currency.lower(),
            "metadata": {"order_id": order_id},
        }

        async def create(retry: int) -> Any:
            options: stripe.RequestOptions = {"idempotency_key": fresh(key) if retry else key}
            return await self.client.v1.payment_intents.create_async(params, options)

        intent = _intent(await self.calls("create_intent", create, retries=1))
        return CheckoutIntent(intent.id, intent.client_secret)

    async def cancel_intent(self, intent_id: str) -> None:
        await self.calls(
            "cancel_intent", lambda _: self.client.v1.payment_intents.cancel_async(intent_id)
        )

    async def intent(self, intent_id: str) -> Intent:
        found = await self.calls(
            "look_up", lambda _: self.client.v1.payment_intents.retrieve_async(intent_id)
        )
        return _intent(found)

    async def look_up(self, order_id: str, intent_id: str, now: float) -> Confirmation | str:
        intent = await self.intent(intent_id)
        if intent.status != "succeeded":
            return intent.status
        return intent.confirmation(f"lookup:{intent.id}", "payment_intent.looked_up", order_id, now)

    async def refund(
        self, transaction_id: str, amount: int, currency: str, key: str
    ) -> GatewayRefund:
        """The whole PaymentIntent, once per `key`: a retried call with it is the same refund
        (Stripe answers a key's first result again, a failed refund's too, so asking again
        after a failure takes a new key). After a server error, Stripe's refunds of the intent
        are looked up before anything is asked again (see the class)."""

        async def create(retry: int) -> Any:
            if retry:
                done = await self._refund_of(transaction_id)
                if done is not None:
                    return done
            return await self.client.v1.refunds.create_async(
                {"payment_intent": transaction_id},
                {"idempotency_key": fresh(key) if retry else key},
            )

        refund = await self.calls("refund", create, retries=1)
        refunded = str(refund.currency).upper()
        return GatewayRefund(
            refund.id,
            str(refund.status),
            _iso(int(refund.amount), refunded),
            refunded,
        )

    async def _refund_of(self, intent_id: str) -> Any | None:
        """A refund of this intent that did not fail, if Stripe has one."""
        found = await self.client.v1.refunds.list_async({"payment_intent": intent_id})
        for refund in found.data:
            if refund.status not in ("failed", "canceled"):
                return refund
        return None
