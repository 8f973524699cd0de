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
from db.orders import OPENING, close_order, mark_placed
from domain.orders import CloseResult
from domain.payments import confirmation_workflow_id
from domain.statuses import CancelReason, PaymentStatus
from gateways import Gateways
from gateways.api import GatewayRefused
from workflows.confirmation_client import start_confirmation


class OrderActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
        gateways: Gateways | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to start the confirmation of a payment found by a look-up
        self.gateways = gateways  # online mode: the gateways with an API are asked

    @activity.defn
    async def look_up_payment(self, order_id: str) -> str:
        """The order's pending attempt, asked of its gateway (online mode). A payment it
        reports succeeded is confirmed through `payment-{provider}-{tx}`, as its webhook
        would have, and this waits (up to a minute) for that to finish. Returns what it
        found: `confirmed`, the gateway's status, `none` (no pending attempt) or `unknown`
        (offline mode, or a gateway without an API)."""
        async with self.sessions() as s:
            attempt = await s.scalar(
                select(Payment).where(
                    Payment.order_id == uuid.UUID(order_id),
                    Payment.status == PaymentStatus.PENDING,
                )
            )
        if attempt is None or attempt.intent_id.startswith(OPENING):
            return "none"  # an intent the checkout never handed anyone: nothing paid it
        if self.client is None:
            return "unknown"
        gateway = self.gateways.get(attempt.provider) if self.gateways else None
        if gateway is None or gateway.api is None:
            return "unknown"
        try:
            looked_up = await gateway.api.look_up(order_id, attempt.intent_id, time.time())
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
            changed, status, reason = await close_order(
                s, uuid.UUID(order_id), CancelReason.TIMEOUT
            )
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
