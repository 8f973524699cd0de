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
from gateways.stripe_api import GatewayRefused, StripeApi
from workflows.confirmation_client import start_confirmation


class OrderActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
        stripe_api: StripeApi | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to start the confirmation of a payment found by a look-up
        self.stripe_api = stripe_api

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
        if attempt.provider != "stripe" or self.stripe_api is None or self.client is None:
            return "unknown"
        try:
            intent = await self.stripe_api.intent(attempt.intent_id)
        except GatewayRefused:
            return "unknown"
        if intent.status != "succeeded":
            return intent.status
        found = Confirmation(
            provider="stripe",
            transaction_id=intent.id,
            intent_id=intent.id,
            amount=intent.amount_received,
            currency=intent.currency,
            event_id=f"lookup:{intent.id}",
            event_type="payment_intent.looked_up",
            order_id=order_id,
            received_at=time.time(),
        )
        await start_confirmation(self.client, activity.info().task_queue, found)
        handle = self.client.get_workflow_handle(confirmation_workflow_id("stripe", intent.id))
        try:
            await asyncio.wait_for(handle.result(), timeout=60)
        except (TimeoutError, WorkflowFailureError):
            return "confirming"
        activity.logger.info("order %s: payment %s found at the gateway", order_id, intent.id)
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

    def all(self) -> list[Any]:
        return [self.look_up_payment, self.expire_order, self.place_order]
