"""How much one customer may hold at checkout: at most `max_held` units in orders awaiting
payment at once, and at most `per_minute` orders placed in any minute. Without them one
customer could reserve every seat for the whole payment window, and cancel and place again
to keep an event sold out at no cost.

Both are counted inside the checkout's own transaction, after a transaction-scoped advisory
lock on the customer: two checkouts of one customer at once are taken one after the other,
so neither can slip past the count the other is about to change. Other customers never wait
on it. A cancelled or expired order holds nothing, so a cancel gives the allowance back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order, OrderItem
from domain.statuses import OrderStatus


@dataclass(frozen=True)
class Limits:
    max_held: int  # PAYSAGA_MAX_HELD_PER_CUSTOMER
    per_minute: int | None  # PAYSAGA_ORDERS_PER_MINUTE (None: no rate limit)


class HoldLimit(Exception):
    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"you hold {held} units awaiting payment; at most {limit} at once")
        self.held, self.limit = held, limit


class TooManyOrders(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} orders a minute; try again shortly")
        self.limit = limit


async def check_limits(s: AsyncSession, customer_id: str, units: int, limits: Limits) -> None:
    """Raises HoldLimit or TooManyOrders before anything is reserved (online, before any
    gateway is called: the stock comes first); holds the customer's lock until the caller's
    transaction ends (the order it then inserts is counted by the next checkout of this
    customer)."""
    await s.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"hold:{customer_id}", 0)))
    )
    held_units = (
        select(func.coalesce(func.sum(OrderItem.quantity), 0))
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.customer_id == customer_id, Order.status == OrderStatus.AWAITING_PAYMENT)
        .scalar_subquery()
    )
    placed = (
        select(func.count())
        .select_from(Order)
        .where(
            Order.customer_id == customer_id,
            Order.created_at > func.now() - text("interval '1 minute'"),
        )
        .scalar_subquery()
    )
    held, recent = (await s.execute(select(held_units, placed))).one()
    if held + units > limits.max_held:
        raise HoldLimit(int(held), limits.max_held)
    if limits.per_minute is not None and recent >= limits.per_minute:
        raise TooManyOrders(limits.per_minute)
