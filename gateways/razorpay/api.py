"""Talking to Razorpay's API (online mode: PAYSAGA_RAZORPAY_KEY_ID and _KEY_SECRET), with the
official SDK: create the Razorpay order at checkout, find the payments of an order or one
payment, capture an authorized payment, refund.

The SDK is synchronous (requests), so each call runs in a thread, with a timeout. Refunds
carry Razorpay's `X-Refund-Idempotency` key, so a retried refund is the same refund; an
order's `receipt` is paysaga's order id. `gateways.calls` guards, measures, classifies and
retries the calls (look-ups and refunds); amounts go through `gateways.currencies`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import razorpay  # type: ignore[import-untyped]  # the SDK ships no type information
import requests
from razorpay.errors import (  # type: ignore[import-untyped]
    BadRequestError,
    GatewayError,
    ServerError,
)

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

TIMEOUT = 10.0
GET_RETRIES = 2  # look-ups read: retrying them is free
REFUND_RETRIES = 2  # refunds carry their idempotency key
CAPTURE_RETRIES = 2  # a capture repeated is "already captured", which counts as done
# Razorpay's answer (400 BAD_REQUEST_ERROR) to capturing a payment captured already.
ALREADY_CAPTURED = "already been captured"


@dataclass(frozen=True)
class RazorpayPayment:
    id: str
    order_id: str | None
    status: str  # created, authorized, captured, refunded, failed
    amount: int
    currency: str


def _iso(amount: int, currency: str) -> int:
    """Razorpay's amount in ISO minor units (the same for every currency it takes today;
    `gateways.currencies` says so, not this module)."""
    try:
        return from_gateway("razorpay", amount, currency)
    except NotRepresentable as exc:
        raise GatewayUnavailable(f"Razorpay: {exc}") from exc


def _payment(entity: dict[str, Any]) -> RazorpayPayment:
    currency = str(entity["currency"]).upper()
    return RazorpayPayment(
        str(entity["id"]),
        entity.get("order_id"),
        str(entity["status"]),
        _iso(int(entity["amount"]), currency),
        currency,
    )


class RateLimited(requests.RequestException):
    """Razorpay answered 429 (the SDK would read it as a server error)."""

    def __init__(self, wait: float | None) -> None:
        super().__init__("rate limited")
        self.wait = wait


class ServerFailure(requests.RequestException):
    """Razorpay answered 5xx (the SDK would read a non-JSON one as a bad request)."""


def _status(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A `requests` response hook: the SDK keeps neither the status nor Retry-After, so
    the two answers that matter to the breaker are told apart here."""
    if response.status_code == 429:
        raise RateLimited(retry_after(response.headers.get("Retry-After")))
    if response.status_code >= 500:
        raise ServerFailure(f"HTTP {response.status_code}")
    return response


def classify(exc: Exception) -> Failure | None:
    if isinstance(exc, RateLimited):
        return Failure("rate_limited", str(exc), exc.wait)
    if isinstance(exc, BadRequestError):  # a 4xx about the request: Razorpay is up
        return Failure("refused", str(exc))
    if isinstance(exc, ServerError | GatewayError | requests.RequestException | OSError):
        return Failure("unavailable", f"{type(exc).__name__}: {exc}")
    return None


class RazorpayApi:
    def __init__(
        self,
        key_id: str,
        key_secret: str,
        base_url: str | None = None,
        metrics: GatewayMetrics = NO_METRICS,
    ) -> None:
        options = {"base_url": base_url} if base_url else {}
        self.client = razorpay.Client(auth=(key_id, key_secret), **options)
        self.client.session.hooks["response"].append(_status)
        self.calls = Calls("razorpay", classify, metrics)

    async def _call(self, call: str, run: Callable[[], Any], retries: int = 0) -> Any:
        async def attempt(_: int) -> Any:
            return await asyncio.to_thread(run)

        return await self.calls(call, attempt, retries)

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        """The Razorpay order the checkout pays (its id is the attempt's intent id). Not
        retried: Razorpay orders carry no idempotency key, and a second order is a second
        thing to pay."""
        theirs = to_gateway("razorpay", amount, currency)
        created = await self._call(
            "create_intent",
            lambda: self.client.order.create(
                {"amount": theirs, "currency": currency, "receipt": order_id},
                timeout=TIMEOUT,
            ),
        )
        return CheckoutIntent(str(created["id"]))

    async def cancel_intent(self, intent_id: str) -> None:
        """Nothing to do: a Razorpay order nobody pays expires at Razorpay."""

    async def look_up(self, order_id: str, intent_id: str, now: float) -> Confirmation | str:
        payments = await self.payments_of(intent_id)
        captured = [p for p in payments if p.status == "captured"]
        if not captured:
            return payments[-1].status if payments else "no_payment"
        p = captured[0]  # a second captured payment arrives as a duplicate order payment
        return Confirmation(
            provider="razorpay",
            transaction_id=p.id,
            intent_id=intent_id,
            amount=p.amount,
            currency=p.currency,
            event_id=f"lookup:{p.id}",
            event_type="payment.looked_up",
            order_id=order_id,
            received_at=now,
        )

    async def payments_of(self, razorpay_order_id: str) -> list[RazorpayPayment]:
        """A GET: retried on a server error or timeout."""
        found = await self._call(
            "look_up",
            lambda: self.client.order.payments(razorpay_order_id, timeout=TIMEOUT),
            retries=GET_RETRIES,
        )
        return [_payment(entity) for entity in found.get("items", [])]

    async def payment(self, payment_id: str) -> RazorpayPayment:
        """One payment (`GET /v1/payments/{id}`): a GET, retried on a server error."""
        found = await self._call(
            "look_up",
            lambda: self.client.payment.fetch(payment_id, timeout=TIMEOUT),
            retries=GET_RETRIES,
        )
        return _payment(found)

    async def capture(self, transaction_id: str, amount: int, currency: str) -> None:
        """`POST /v1/payments/{id}/capture` for the whole amount. Retried on a server error
        or timeout: a retry whose first try did capture is answered "already captured",
        which is success, as it is when the payment's own capture webhook won the race."""
        theirs = to_gateway("razorpay", amount, currency)

        def capture() -> Any:
            try:
                return self.client.payment.capture(
                    transaction_id, theirs, {"currency": currency}, timeout=TIMEOUT
                )
            except BadRequestError as exc:
                if ALREADY_CAPTURED in str(exc):
                    return None
                raise

        await self._call("capture", capture, retries=CAPTURE_RETRIES)

    async def refund(
        self, transaction_id: str, amount: int, currency: str, key: str
    ) -> GatewayRefund:
        """In full, once per `key`: a retried call with it is the same refund (a failed one
        too, so asking again after a failure takes a new key). Retried on a server error or
        timeout with the same `X-Refund-Idempotency` key: Razorpay's documented idempotency
        for refunds, so a retry whose first try did refund answers that refund."""
        theirs = to_gateway("razorpay", amount, currency)
        refund = await self._call(
            "refund",
            lambda: self.client.payment.refund(
                transaction_id,
                {"amount": theirs},
                headers={"X-Refund-Idempotency": key},
                timeout=TIMEOUT,
            ),
            retries=REFUND_RETRIES,
        )
        status = str(refund["status"])  # pending, processed, failed
        refunded = str(refund["currency"]).upper()
        return GatewayRefund(
            str(refund["id"]),
            "succeeded" if status == "processed" else status,
            _iso(int(refund["amount"]), refunded),
            refunded,
        )
