"""Talking to Razorpay's API (online mode: PAYSAGA_RAZORPAY_KEY_ID and _KEY_SECRET), with the
official SDK: create the Razorpay order at checkout, find the payments of an order, refund.

The SDK is synchronous (requests), so each call runs in a thread, with a timeout. Refunds
carry Razorpay's `X-Refund-Idempotency` key, so a retried refund is the same refund; an
order's `receipt` is paysaga's order id. A circuit breaker (`gateways.api`) guards the calls.
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
    Breaker,
    CheckoutIntent,
    GatewayRefund,
    GatewayRefused,
    GatewayUnavailable,
)

TIMEOUT = 10.0


@dataclass(frozen=True)
class RazorpayPayment:
    id: str
    order_id: str | None
    status: str  # created, authorized, captured, refunded, failed
    amount: int
    currency: str


def _payment(entity: dict[str, Any]) -> RazorpayPayment:
    return RazorpayPayment(
        str(entity["id"]),
        entity.get("order_id"),
        str(entity["status"]),
        int(entity["amount"]),
        str(entity["currency"]).upper(),
    )


class RazorpayApi:
    def __init__(self, key_id: str, key_secret: str, base_url: str | None = None) -> None:
        options = {"base_url": base_url} if base_url else {}
        self.client = razorpay.Client(auth=(key_id, key_secret), **options)
        self.breaker = Breaker("Razorpay")

    async def _call(self, call: Callable[[], Any]) -> Any:
        self.breaker.check()
        try:
            result = await asyncio.to_thread(call)
        except BadRequestError as exc:  # a 4xx about the request: Razorpay is up
            self.breaker.record(True)
            raise GatewayRefused(str(exc)) from exc
        except (ServerError, GatewayError, requests.RequestException, OSError) as exc:
            self.breaker.record(False)
            raise GatewayUnavailable(f"Razorpay: {type(exc).__name__}: {exc}"[:300]) from exc
        self.breaker.record(True)
        return result

    async def create_intent(
        self, order_id: str, amount: int, currency: str, attempt: int = 1
    ) -> CheckoutIntent:
        """The Razorpay order the checkout pays (its id is the attempt's intent id)."""
        created = await self._call(
            lambda: self.client.order.create(
                {"amount": amount, "currency": currency, "receipt": order_id},
                timeout=TIMEOUT,
            )
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
        found = await self._call(
            lambda: self.client.order.payments(razorpay_order_id, timeout=TIMEOUT)
        )
        return [_payment(entity) for entity in found.get("items", [])]

    async def refund(
        self, transaction_id: str, amount: int, currency: str, key: str
    ) -> GatewayRefund:
        """In full, once per `key`: a retried call with it is the same refund (a failed one
        too, so asking again after a failure takes a new key)."""
        refund = await self._call(
            lambda: self.client.payment.refund(
                transaction_id,
                {"amount": amount},
                headers={"X-Refund-Idempotency": key},
                timeout=TIMEOUT,
            )
        )
        status = str(refund["status"])  # pending, processed, failed
        return GatewayRefund(
            str(refund["id"]),
            "succeeded" if status == "processed" else status,
            int(refund["amount"]),
            str(refund["currency"]).upper(),
        )
