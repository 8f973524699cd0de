"""What a test reads back from the stack: the rows one confirmation leaves, stock, the result
of an order's or a refund's workflow; and the check that a refused checkout reserved nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, Event, Order, Payment, Product, Refund, Ticket
from domain.payments import refund_workflow_id
from tests.support.stack import Stack


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def effects(sessions: async_sessionmaker[AsyncSession], order_id: str) -> dict[str, int]:
    """What one confirmation must leave exactly once."""
    oid = uuid.UUID(order_id)
    return {
        "paid_payments": await count(
            sessions, Payment, Payment.order_id == oid, Payment.status == "paid"
        ),
        "audit": await count(sessions, AuditEntry, AuditEntry.order_id == oid),
        "tickets": await count(sessions, Ticket, Ticket.order_id == oid),
        "order_paid_events": await count(
            sessions, Event, Event.order_id == oid, Event.type == "OrderPaid"
        ),
        "payment_confirmed_events": await count(
            sessions, Event, Event.order_id == oid, Event.type == "PaymentConfirmed"
        ),
    }


ONE_CONFIRMATION = {
    "paid_payments": 1,
    "audit": 2,
    "tickets": 1,
    "order_paid_events": 1,
    "payment_confirmed_events": 1,
}
NO_CONFIRMATION = {
    "paid_payments": 0,
    "audit": 0,
    "tickets": 0,
    "order_paid_events": 0,
    "payment_confirmed_events": 0,
}


async def assert_checkout_refused_with_nothing_reserved(stack: Stack, provider: str) -> None:
    """A gateway that is down at checkout (online mode): 503, and no stock held. The stock
    is reserved before the gateway is asked (issue 26 item 2), so each failed checkout leaves
    an order cancelled as `checkout_failed`, its stock back, its attempt cancelled, no
    attendee kept, and the events the integrity rules ask of a cancelled order."""
    sku = f"CONF-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Pass", "unit_amount": 900, "currency": "INR", "stock": 3}
    created = await stack.http.post("/admin/products", json=product, headers=stack.admin)
    assert created.status_code == 201
    attendee = {"name": "Ada", "email": "ada@example.com"}
    for _ in range(2):
        answer = await stack.http.post(
            "/orders",
            json={
                "items": [{"sku": sku, "quantity": 1}],
                "provider": provider,
                "attendee": attendee,
            },
            headers=stack.user(),
        )
        assert answer.status_code == 503 and "nothing was reserved" in answer.json()["detail"]
    async with stack.sessions() as s:
        assert await s.scalar(select(Product.stock).where(Product.sku == sku)) == 3
        orders = (
            await s.execute(
                select(Order.id, Order.status, Order.cancel_reason, Order.attendee_email)
            )
        ).all()
        assert [(status, reason, email) for _, status, reason, email in orders] == [
            ("cancelled", "checkout_failed", None)
        ] * 2
        ids = [order_id for order_id, *_ in orders]
        attempts = (await s.execute(select(Payment.status).where(Payment.order_id.in_(ids)))).all()
        assert [status for (status,) in attempts] == ["cancelled"] * 2
        events = await s.execute(
            select(Event.type, func.count()).where(Event.order_id.in_(ids)).group_by(Event.type)
        )
        assert {kind: n for kind, n in events} == {"OrderCreated": 2, "OrderCancelled": 2}


async def window_outcome(stack: Stack, order_id: str, limit: float = 60.0) -> str:
    """How the order's payment window ended, once it has: `paid` (paid, or refunded since,
    with its `OrderPlaced`), `expired` (closed by the window keeper) or `cancelled` (by the
    customer, an admin or a failed checkout). Waits while it still awaits payment."""
    oid = uuid.UUID(order_id)
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        async with stack.sessions() as s:
            status, reason = (
                await s.execute(select(Order.status, Order.cancel_reason).where(Order.id == oid))
            ).one()
            placed = await s.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.order_id == oid, Event.type == "OrderPlaced")
            )
        if status in ("paid", "refunded"):
            assert placed == 1, f"order {order_id} is {status} without its OrderPlaced"
            return "paid"
        if status == "cancelled":
            assert placed == 0, f"order {order_id} is cancelled but was placed"
            return "expired" if reason == "timeout" else "cancelled"
        assert asyncio.get_running_loop().time() < deadline, f"order {order_id} still {status}"
        await asyncio.sleep(0.1)


async def refund_result(stack: Stack, provider: str, tx: str) -> str:
    handle = stack.client.get_workflow_handle(refund_workflow_id(provider, tx))
    return str(await asyncio.wait_for(handle.result(), timeout=60))


async def wait_refund_status(stack: Stack, tx: str, status: str) -> None:
    """Polls the refund row (what a request wrote) until it reads `status`."""
    for _ in range(300):
        async with stack.sessions() as s:
            if await s.scalar(select(Refund.status).where(Refund.transaction_id == tx)) == status:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the refund of {tx} never read {status}")


async def stock_of(stack: Stack, order: dict[str, Any]) -> int:
    async with stack.sessions() as s:
        stock = await s.scalar(select(Product.stock).where(Product.sku == order["items"][0]["sku"]))
    assert stock is not None
    return stock


async def product_stock(stack: Stack, sku: str) -> int | None:
    async with stack.sessions() as s:
        return await s.scalar(select(Product.stock).where(Product.sku == sku))
