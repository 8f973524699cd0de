"""One outgoing gateway API call, the same way for every gateway: the breaker asked first; the
call timed and recorded (`paysaga_gateway_call_seconds{provider,call,result}`); its failure
told apart (refused, unavailable, rate limited) by the gateway's own `classify`; a rate limit
waited out briefly as `Retry-After` says; a server error or timeout retried where the caller
says a retry is safe. Only what is still a server error, timeout or unreachable gateway after
that counts toward opening the breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateways.api import (
    NO_METRICS,
    Breaker,
    GatewayMetrics,
    GatewayRefused,
    GatewayUnavailable,
)

T = TypeVar("T")

RATE_LIMIT_WAITS = 2  # then 503: the customer tries again, the breaker stays closed
MAX_WAIT_SECONDS = 2.0  # a longer Retry-After is not waited out inside a request
BACKOFF_SECONDS = 0.2  # before a retry after a server error: 0.2 s, 0.4 s, ...


@dataclass(frozen=True)
class Failure:
    result: str  # refused, unavailable, rate_limited (the metric's words)
    message: str
    retry_after: float | None = None  # seconds, from the gateway's Retry-After


Classify = Callable[[Exception], "Failure | None"]  # None: not the gateway's failure


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (its HTTP-date form is not used by these gateways)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class Calls:
    def __init__(
        self,
        provider: str,
        classify: Classify,
        metrics: GatewayMetrics = NO_METRICS,
        breaker: Breaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider, self.classify, self.metrics, self.sleep = provider, classify, metrics, sleep
        self.breaker = breaker or Breaker(provider, metrics=metrics)

    async def __call__(
        self, call: str, attempt: Callable[[int], Awaitable[T]], retries: int = 0
    ) -> T:
        """`attempt(n)`: the n-th try after a server error or timeout (0 first), so a caller
        can change what a retry sends (a fresh idempotency key where that is safe)."""
        self.breaker.check()
        settle = self.breaker.neutral  # a call abandoned (cancelled) tells nothing
        try:
            tries = waits = 0
            while True:
                started = time.monotonic()
                try:
                    result = await attempt(tries)
                except Exception as exc:
                    failure = self.classify(exc)
                    if failure is None:
                        raise
                    self.metrics.call(
                        self.provider, call, failure.result, time.monotonic() - started
                    )
                    if failure.result == "rate_limited" and waits < RATE_LIMIT_WAITS:
                        waits += 1
                        wait = failure.retry_after
                        await self.sleep(min(wait if wait is not None else 1.0, MAX_WAIT_SECONDS))
                        continue
                    if failure.result == "unavailable" and tries < retries:
                        tries += 1
                        await self.sleep(BACKOFF_SECONDS * 2 ** (tries - 1))
                        continue
                    settle = self._settle(failure.result)
                    raise self._error(failure) from exc
                self.metrics.call(self.provider, call, "ok", time.monotonic() - started)
                settle = self.breaker.succeeded
                return result
        finally:
            settle()

    def _settle(self, result: str) -> Callable[[], None]:
        if result == "refused":  # the gateway answered: it is up
            return self.breaker.succeeded
        if result == "unavailable":
            return self.breaker.failed
        return self.breaker.neutral

    def _error(self, failure: Failure) -> Exception:
        if failure.result == "refused":  # the gateway's own words, as they were
            return GatewayRefused(failure.message)
        text = f"{self.provider}: {failure.message}"[:300]
        if failure.result == "rate_limited":
            return GatewayUnavailable(f"{self.provider}: rate limited; try again shortly")
        return GatewayUnavailable(text)
