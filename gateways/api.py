"""What every gateway API adapter offers (online mode), as one protocol: create and cancel the
checkout's intent, look a payment up, refund; its two failures, the refund it reports in one
vocabulary, and a circuit breaker.

A breaker stops calling a gateway that failed `FAILURES` times running, for `OPEN_SECONDS`:
a checkout then answers 503 at once, with nothing reserved, instead of each customer waiting
out the timeouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from domain.payments import Confirmation

FAILURES = 5
OPEN_SECONDS = 30.0


class GatewayUnavailable(Exception):
    """The gateway did not answer (or its breaker is open): try again later (503)."""


class GatewayRefused(Exception):
    """The gateway answered no (a 4xx): not retried."""


@dataclass(frozen=True)
class GatewayRefund:
    id: str
    status: str  # succeeded, pending, failed (Stripe's words; Razorpay's `processed` is succeeded)
    amount: int
    currency: str


@dataclass(frozen=True)
class CheckoutIntent:
    """What the gateway made for a checkout: the attempt's intent id, and the browser's key to
    pay it where the gateway has one (Stripe's client secret)."""

    intent_id: str
    client_secret: str | None = None


class GatewayApi(Protocol):
    """A gateway's API, as the checkout, the look-up and the refund use it."""

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        """The intent an order's `attempt` (1: the checkout) pays, for this amount. The same
        order and attempt asked again is the same intent where the gateway can say so."""

    async def cancel_intent(self, intent_id: str) -> None:
        """An intent for an order that was not made: nobody can pay it any more. A gateway
        whose intents simply expire does nothing."""

    async def look_up(self, order_id: str, intent_id: str, now: float) -> Confirmation | str:
        """A payment the gateway reports for this intent, as its webhook would have told it;
        or the gateway's word for what it has instead (`requires_payment_method`, ...)."""

    async def refund(
        self, transaction_id: str, amount: int, currency: str, key: str
    ) -> GatewayRefund:
        """In full, once per `key`: a retried call with it is the same refund."""


class Breaker:
    def __init__(
        self, gateway: str, failures: int = FAILURES, open_seconds: float = OPEN_SECONDS
    ) -> None:
        self.gateway = gateway
        self.limit, self.open_seconds = failures, open_seconds
        self.failures, self.opened_at = 0, 0.0

    def check(self) -> None:
        if self.failures >= self.limit and time.monotonic() - self.opened_at < self.open_seconds:
            raise GatewayUnavailable(
                f"{self.gateway} failed repeatedly; not calling it for a while"
            )

    def record(self, ok: bool) -> None:
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.limit:
            self.opened_at = time.monotonic()  # (re)opened; one trial call once it elapses
