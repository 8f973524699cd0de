"""The order lifecycle's side effects. Each is one guarded transaction in `db.orders`, so a
retried activity, or one racing a confirmation or a customer's cancel, changes nothing twice."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.orders import close_order, mark_placed
from domain.orders import CloseResult


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

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
        return [self.expire_order, self.place_order]
