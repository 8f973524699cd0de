"""The order's own rules of `paysaga admin check` (`db.invariants`): its payment window is
held, and a paid order was placed (`OrderPlaced`, written with `OrderPaid`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from domain.payments import order_workflow_id

# How a workflow's status is read (`db.invariants._status`): None when missing or unreachable.
Status = Callable[[Client | None, str], Awaitable[WorkflowExecutionStatus | None]]


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


UNPLACED = text(
    """
    SELECT o.id FROM orders o WHERE o.status = 'paid'
    AND NOT EXISTS (SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = 'OrderPlaced')
    """
)
# A look-up at the gateway may take up to 90 s before the window closes; the rest is the poll.
WINDOW_GRACE_SECONDS = 120
WINDOW_NOT_HELD = text(
    """
    SELECT o.id, o.expires_at FROM orders o
    WHERE o.status = 'awaiting_payment'
    AND o.expires_at < now() - make_interval(secs => :grace)
    AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'paid')
    """
).bindparams(grace=WINDOW_GRACE_SECONDS)
PLACED = text(
    "SELECT EXISTS (SELECT 1 FROM events WHERE order_id = :order_id AND type = 'OrderPlaced')"
)


async def window_rules(s: AsyncSession) -> list[Violation]:
    return [
        Violation("window_held", f"order {order_id} awaits payment; window ended {expires_at}")
        for order_id, expires_at in await s.execute(WINDOW_NOT_HELD)
    ]


async def unplaced(
    sessions: async_sessionmaker[AsyncSession],
    client: Client | None,
    order_ids: list[Any],
    status: Status,
) -> list[Violation]:
    """Paid orders without `OrderPlaced`: a violation unless a lifecycle workflow from before
    the window keeper still holds the order (it writes the event as it ends)."""
    found: list[Violation] = []
    for order_id in order_ids:
        lifecycle = await status(client, order_workflow_id(str(order_id)))
        # Read after the lifecycle's status: one that completed since the query above has
        # committed its OrderPlaced by now, and is not a violation.
        if lifecycle != WorkflowExecutionStatus.RUNNING and not await _placed(sessions, order_id):
            found.append(
                Violation(
                    "state_change_has_event",
                    f"order {order_id} is paid without OrderPlaced; its lifecycle is "
                    f"{lifecycle.name.lower() if lifecycle else 'missing'}",
                )
            )
    return found


async def _placed(sessions: async_sessionmaker[AsyncSession], order_id: object) -> bool:
    async with sessions() as s:
        return bool(await s.scalar(PLACED, {"order_id": order_id}))
