"""What every gateway API adapter shares (online mode): its two failures, the refund it
reports in one vocabulary, and a circuit breaker.

A breaker stops calling a gateway that failed `FAILURES` times running, for `OPEN_SECONDS`:
a checkout then answers 503 at once, with nothing reserved, instead of each customer waiting
out the timeouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
