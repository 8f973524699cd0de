"""An order's payment attempts: a new one while the window is open, one a gateway ended,
and whether a transaction's payment is confirmed already (webhook step 3a)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order, Payment
from domain import keys
from domain.statuses import OrderStatus, PaymentStatus


class AttemptRefused(Exception):
    """A new payment attempt is not possible now; the message says why (answered 409)."""


async def payable(s: AsyncSession, order_id: uuid.UUID, *, lock: bool = True) -> tuple[Order, int]:
    """The order a new payment attempt may be added to, and that attempt's number (the
    checkout's is 1); AttemptRefused otherwise: not awaiting payment, its window closed, or
    an attempt still pending. `lock`: the order row is locked first, as `close_order` locks
    it, so an attempt cannot be added to an order the window is closing at that moment;
    without it, a look before a gateway is asked for an intent (the locked one decides)."""
    query = select(Order, Order.expires_at <= func.now()).where(Order.id == order_id)
    row = (await s.execute(query.with_for_update(of=Order) if lock else query)).one_or_none()
    if row is None:
        raise AttemptRefused("no such order")
    order, expired = row
    if order.status != OrderStatus.AWAITING_PAYMENT:
        raise AttemptRefused(f"the order is {order.status}")
    if expired:
        raise AttemptRefused("the order's payment window has closed")
    pending = await s.scalar(
        select(Payment.intent_id).where(
            Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING
        )
    )
    if pending is not None:
        raise AttemptRefused(f"payment attempt {pending} is still pending")
    attempts = await s.scalar(
        select(func.count()).select_from(Payment).where(Payment.order_id == order_id)
    )
    return order, int(attempts or 0) + 1


async def new_attempt(s: AsyncSession, order_id: uuid.UUID, provider: str, intent_id: str) -> None:
    """A new payment attempt after a failed or cancelled one, while the window is open."""
    order, _ = await payable(s, order_id)
    s.add(
        Payment(
            order_id=order_id,
            provider=provider,
            intent_id=intent_id,
            status=PaymentStatus.PENDING,
            amount=order.amount,
            currency=order.currency,
        )
    )
    await s.flush()


async def end_attempt(
    s: AsyncSession,
    provider: str,
    intent_id: str,
    status: PaymentStatus,
    detail: dict[str, Any],
) -> uuid.UUID | None:
    """A gateway says an attempt failed or was cancelled: `pending` becomes `failed` or
    `cancelled` with its `PaymentFailed` event; the order keeps waiting for payment until its
    window closes. Only a pending attempt changes: a failure that arrives after the success
    (webhooks come out of order) changes nothing, and a later success of a failed attempt
    (Stripe: the customer changes card) is still confirmed by its own workflow.
    Returns the order id if the attempt changed."""
    assert status in (PaymentStatus.FAILED, PaymentStatus.CANCELLED)
    row = (
        await s.execute(
            update(Payment)
            .where(
                Payment.provider == provider,
                Payment.intent_id == intent_id,
                Payment.status == PaymentStatus.PENDING,
            )
            .values(status=status)
            .returning(Payment.order_id, Payment.amount, Payment.currency)
        )
    ).one_or_none()
    if row is None:
        return None
    await journal.emit(
        s,
        "PaymentFailed",
        row.order_id,
        keys.event("PaymentFailed", provider, intent_id),
        {
            "provider": provider,
            "intent_id": intent_id,
            "status": str(status),
            "amount": row.amount,
            "currency": row.currency,
        }
        | detail,
    )
    return uuid.UUID(str(row.order_id))


async def payment_already_confirmed(s: AsyncSession, provider: str, transaction_id: str) -> bool:
    """3a: true once this transaction's payment is stored and its order is paid."""
    found = await s.scalar(
        select(Payment.id)
        .join(Order, Order.id == Payment.order_id)
        .where(
            Payment.provider == provider,
            Payment.transaction_id == transaction_id,
            Payment.status == PaymentStatus.PAID,
            Order.status == OrderStatus.PAID,
        )
    )
    return found is not None
