"""Talking to Stripe's API (online mode: PAYSAGA_STRIPE_API_KEY, PAYSAGA_STRIPE_API_BASE),
with the official SDK: create a PaymentIntent at checkout, look one up, refund one.

Every call has a timeout and the SDK's own retries with an idempotency key, so a retried
create or refund is the same one at Stripe; a circuit breaker (`gateways.api`) guards them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from domain.payments import Confirmation
from gateways.api import (
    Breaker,
    CheckoutIntent,
    GatewayRefund,
    GatewayRefused,
    GatewayUnavailable,
)
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


def _intent(pi: Any) -> Intent:
    metadata = pi.metadata.to_dict() if getattr(pi, "metadata", None) else {}
    fields = pi.to_dict()
    field = received_field(fields)
    received = fields[field] if field else 0
    return Intent(
        id=pi.id,
        status=pi.status,
        amount=int(pi.amount),
        amount_received=int(received),
        currency=str(pi.currency).upper(),
        client_secret=getattr(pi, "client_secret", None),
        order_id=metadata.get("order_id"),
    )


class StripeApi:
    def __init__(self, api_key: str, api_base: str | None, timeout: float = 10.0) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2,
            http_client=stripe.HTTPXClient(timeout=timeout),
        )
        self.breaker = Breaker("Stripe")

    async def _call(self, call: Any) -> Any:
        self.breaker.check()
        try:
            result = await call
        except stripe.InvalidRequestError as exc:  # 4xx about the request: Stripe is up
            self.breaker.record(True)
            raise GatewayRefused(str(exc.user_message or exc)) from exc
        except stripe.RateLimitError as exc:
            # Stripe is up and says "slower": retried later, but not a failure that opens the
            # breaker, or one busy customer would close checkout for everyone.
            raise GatewayUnavailable(f"Stripe: rate limited: {exc}"[:300]) from exc
        except (stripe.StripeError, OSError) as exc:
            self.breaker.record(False)
            raise GatewayUnavailable(f"Stripe: {type(exc).__name__}: {exc}"[:300]) from exc
        self.breaker.record(True)
        return result

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        # One idempotency key per attempt: a retried request is the same intent, a new
        # attempt a new one (the checkout's key is as it always was).
        key = f"checkout-{order_id}" if attempt == 1 else f"checkout-{order_id}-{attempt}"
        pi = await self._call(
            self.client.v1.payment_intents.create_async(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "metadata": {"order_id": order_id},
                },
                {"idempotency_key": key},
            )
        )
        intent = _intent(pi)
        return CheckoutIntent(intent.id, intent.client_secret)

    async def cancel_intent(self, intent_id: str) -> None:
        await self._call(self.client.v1.payment_intents.cancel_async(intent_id))

    async def intent(self, intent_id: str) -> Intent:
        return _intent(await self._call(self.client.v1.payment_intents.retrieve_async(intent_id)))

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
        after a failure takes a new key)."""
        refund = await self._call(
            self.client.v1.refunds.create_async(
                {"payment_intent": transaction_id}, {"idempotency_key": key}
            )
        )
        return GatewayRefund(
            refund.id, str(refund.status), int(refund.amount), str(refund.currency).upper()
        )
