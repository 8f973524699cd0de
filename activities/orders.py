"""The order lifecycle's side effects. Each is one guarded transaction in `db.orders`, so a
retried activity, or one racing a confirmation or a customer's cancel, changes nothing twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError

from db.models import Payment
from db.orders import close_order, mark_placed
from domain.orders import CloseResult
from domain.payments import Confirmation, PaymentStatus, confirmation_workflow_id
from gateways.api import GatewayRefused
from gateways.razorpay_api import RazorpayApi
from gateways.stripe_api import StripeApi
from workflows.confirmation_client import start_confirmation


class OrderActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
        stripe_api: StripeApi | None = None,
        razorpay_api: RazorpayApi | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to start the confirmation of a payment found by a look-up
        self.stripe_api = stripe_api  # online mode, per gateway
        self.razorpay_api = razorpay_api

    @activity.defn
    async def look_up_payment(self, order_id: str) -> str:
        """The order's pending attempt, asked of its gateway (online mode). A payment it
        reports succeeded is confirmed through `payment-{provider}-{tx}`, as its webhook
        would have, and this waits (up to a minute) for that to finish. Returns what it
        found: `confirmed`, the gateway's status, `none` (no pending attempt) or `unknown`
        (offline mode, or a gateway this cannot ask yet)."""
        async with self.sessions() as s:
            attempt = await s.scalar(
                select(Payment).where(
                    Payment.order_id == uuid.UUID(order_id),
                    Payment.status == PaymentStatus.PENDING,
                )
            )
        if attempt is None:
            return "none"
        if self.client is None:
            return "unknown"
        try:
            looked_up = await self._look_up(order_id, attempt.provider, attempt.intent_id)
        except GatewayRefused:
            return "unknown"
        if isinstance(looked_up, str):
            return looked_up
        found = looked_up
        await start_confirmation(self.client, activity.info().task_queue, found)
        handle = self.client.get_workflow_handle(
            confirmation_workflow_id(found.provider, found.transaction_id)
        )
        try:
            await asyncio.wait_for(handle.result(), timeout=60)
        except (TimeoutError, WorkflowFailureError):
            return "confirming"
        activity.logger.info(
            "order %s: payment %s found at the gateway", order_id, found.transaction_id
        )
        return "confirmed"

    @activity.defn
    async def expire_order(self, order_id: str) -> CloseResult:
        """The payment window closed: cancel the order unless it was paid (or closed) first,
        or its payment is stored and being confirmed."""
        async with self.sessions.begin() as s:
            changed, status, reason = await close_order(s, uuid.UUID(order_id), "timeout")
        if changed:
            activity.logger.info("order %s expired: cancelled, stock released", order_id)
        return CloseResult(changed, status, reason)

    @activity.defn
    async def place_order(self, order_id: str) -> bool:
        """`OrderPlaced` after `OrderPaid`: the order is confirmed for fulfilment."""
        async with self.sessions.begin() as s:
            return await mark_placed(s, uuid.UUID(order_id))

    async def _look_up(self, order_id: str, provider: str, intent_id: str) -> Confirmation | str:
        """A payment the gateway reports for this intent, as its webhook would have told it;
        or what the gateway says instead."""
        now = time.time()
        if provider == "stripe" and self.stripe_api is not None:
            intent = await self.stripe_api.intent(intent_id)
            if intent.status != "succeeded":
                return intent.status
            return intent.confirmation(
                f"lookup:{intent.id}", "payment_intent.looked_up", order_id, now
            )
        if provider == "razorpay" and self.razorpay_api is not None:
            payments = await self.razorpay_api.payments_of(intent_id)
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
        return "unknown"

    def all(self) -> list[Any]:
        return [self.look_up_payment, self.expire_order, self.place_order]
