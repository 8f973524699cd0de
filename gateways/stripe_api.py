"""Talking to Stripe's API (online mode: PAYSAGA_STRIPE_API_KEY, PAYSAGA_STRIPE_API_BASE),
with the official SDK: create a PaymentIntent at checkout, look one up, refund one.

Every call has a timeout and the SDK's own retries with an idempotency key, so a retried
create or refund is the same one at Stripe. A circuit breaker stops calling a Stripe that
failed `FAILURES` times running, for `OPEN_SECONDS`: a checkout then answers 503 at once,
with nothing reserved, instead of each customer waiting out the timeouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import stripe

FAILURES = 5
OPEN_SECONDS = 30.0


class GatewayUnavailable(Exception):
    """Stripe did not answer (or the breaker is open): try again later (503)."""


class GatewayRefused(Exception):
    """Stripe answered no (a 4xx): not retried."""


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    client_secret: str | None
    order_id: str | None


@dataclass(frozen=True)
class GatewayRefund:
    id: str
    status: str  # succeeded, pending, failed, canceled
    amount: int
    currency: str


class Breaker:
    def __init__(self, failures: int = FAILURES, open_seconds: float = OPEN_SECONDS) -> None:
        self.limit, self.open_seconds = failures, open_seconds
        self.failures, self.opened_at = 0, 0.0

    def check(self) -> None:
        if self.failures >= self.limit and time.monotonic() - self.opened_at < self.open_seconds:
            raise GatewayUnavailable("Stripe failed repeatedly; not calling it for a while")

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.limit:
            self.opened_at = time.monotonic()  # (re)opened; one trial call once it elapses


def _intent(pi: Any) -> Intent:
    metadata = pi.metadata.to_dict() if getattr(pi, "metadata", None) else {}
    received = getattr(pi, "amount_received", None)
    if received is None:
        # Stripe always sends it; localstripe (the emulator the tests run) does not. A
        # succeeded intent without it received its amount.
        received = pi.amount if pi.status == "succeeded" else 0
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
        self.breaker = Breaker()

    async def _call(self, call: Any) -> Any:
        self.breaker.check()
        try:
            result = await call
        except stripe.InvalidRequestError as exc:  # 4xx about the request: Stripe is up
            self.breaker.record(True)
            raise GatewayRefused(str(exc.user_message or exc)) from exc
        except (stripe.StripeError, OSError) as exc:
            self.breaker.record(False)
            raise GatewayUnavailable(f"Stripe: {type(exc).__name__}: {exc}"[:300]) from exc
        self.breaker.record(True)
        return result

    async def create_intent(self, order_id: str, amount: int, currency: str) -> Intent:
        pi = await self._call(
            self.client.v1.payment_intents.create_async(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "metadata": {"order_id": order_id},
                },
                {"idempotency_key": f"checkout-{order_id}"},
            )
        )
        return _intent(pi)

    async def cancel_intent(self, intent_id: str) -> None:
        await self._call(self.client.v1.payment_intents.cancel_async(intent_id))

    async def intent(self, intent_id: str) -> Intent:
        return _intent(await self._call(self.client.v1.payment_intents.retrieve_async(intent_id)))

    async def refund(self, intent_id: str) -> GatewayRefund:
        """The whole PaymentIntent, once: the key makes a retried call the same refund."""
        refund = await self._call(
            self.client.v1.refunds.create_async(
                {"payment_intent": intent_id}, {"idempotency_key": f"refund-{intent_id}"}
            )
        )
        return GatewayRefund(
            refund.id, str(refund.status), int(refund.amount), str(refund.currency).upper()
        )
