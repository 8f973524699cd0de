"""What every gateway API adapter offers (online mode), as one protocol: create and cancel the
checkout's intent, look a payment up, refund; its two failures, the refund it reports in one
vocabulary, and a circuit breaker.

A breaker stops calling a gateway that failed `FAILURES` times running, for `OPEN_SECONDS`:
a checkout then answers 503 at once, with nothing reserved, instead of each customer waiting
out the timeouts. Only the gateway's own failures count: a refusal (4xx) or a rate limit is
one customer's business, and must not close checkout for everyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Capturing(Protocol):
    """A gateway API that captures authorizations (Razorpay). Refused: GatewayRefused."""

    async def capture(self, transaction_id: str, amount: int, currency: str) -> None:
        """Captures the authorized payment in full. One already captured counts as done."""


class GatewayMetrics(Protocol):
    """Where a process records its gateway calls (`observability.metrics`: one per registry,
    since the API and the worker both call gateways)."""

    def call(self, provider: str, call: str, result: str, seconds: float) -> None:
        """One outgoing API call: ok, refused, unavailable or rate_limited."""

    def circuit(self, provider: str, state: int) -> None:
        """The provider's breaker is now CLOSED, HALF_OPEN or OPEN."""


class NoMetrics:
    """Nothing recorded (a process that only reads the gateways' settings)."""

    def call(self, provider: str, call: str, result: str, seconds: float) -> None:
        pass

    def circuit(self, provider: str, state: int) -> None:
        pass


NO_METRICS = NoMetrics()
CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the gauge's values


class Breaker:
    """Closed: calls pass, and `FAILURES` failures in a row (server errors, timeouts,
    unreachable: never a refusal or a rate limit) open it. Open: no call for `open_seconds`.
    Half-open: one trial call; its success closes, its failure opens again."""

    def __init__(
        self,
        provider: str,
        failures: int = FAILURES,
        open_seconds: float = OPEN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        self.provider, self.limit, self.open_seconds = provider, failures, open_seconds
        self.clock, self.metrics = clock, metrics
        self.failures, self.opened_at, self.trial = 0, 0.0, False
        self.state = CLOSED
        metrics.circuit(provider, CLOSED)

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            self.metrics.circuit(self.provider, state)

    def check(self) -> None:
        """Admits a call, or raises GatewayUnavailable (open; or half-open with its one trial
        call under way)."""
        if self.state == OPEN and self.clock() - self.opened_at >= self.open_seconds:
            self._set(HALF_OPEN)
        if self.state == OPEN or (self.state == HALF_OPEN and self.trial):
            raise GatewayUnavailable(
                f"{self.provider} failed repeatedly; not calling it for a while"
            )
        if self.state == HALF_OPEN:
            self.trial = True

    def refusing(self) -> bool:
        """Whether `check` would refuse a call now; a look that changes nothing (it takes no
        half-open trial), for a caller that would prepare work for the call first."""
        if self.state == OPEN:
            return self.clock() - self.opened_at < self.open_seconds
        return self.state == HALF_OPEN and self.trial

    def succeeded(self) -> None:
        """An answer (a refusal too: the gateway is up)."""
        self.failures, self.trial = 0, False
        self._set(CLOSED)

    def failed(self) -> None:
        self.failures += 1
        self.trial = False
        if self.state == HALF_OPEN or self.failures >= self.limit:
            self.opened_at = self.clock()
            self._set(OPEN)

    def neutral(self) -> None:
        """Neither: a rate limit, or a call abandoned. A half-open breaker may try again."""
        self.trial = False
