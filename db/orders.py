"""Orders and products as the API reads and writes them (the saga's writes are activities)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order, OrderItem, Payment, Product, Refund, Ticket
from domain import keys
from domain.confirmation import AuditRecord
from domain.payments import OrderStatus, PaymentStatus


class OutOfStock(Exception):
    """Unknown skus, or not enough stock: every one of them (SEQ-BP-002), nothing reserved."""

    def __init__(self, skus: list[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = skus


class NotPayable(Exception):
    """The order is neither awaiting payment nor paid (cancelled, refunded)."""

    def __init__(self, status: str | None) -> None:
        super().__init__(f"order is {status or 'missing'}, cannot be marked paid")
        self.status = status


class MixedCurrencies(Exception):
    pass


class PriceChanged(Exception):
    """A price moved between the quote (the gateway's intent) and the reservation."""


@dataclass(frozen=True)
class NewOrder:
    customer_id: str
    items: dict[str, int]  # sku -> quantity
    provider: str
    intent_id: str
    attendee_name: str | None
    attendee_email: str | None
    window_seconds: int = 900  # PAYSAGA_PAYMENT_WINDOW_SECONDS
    # Online mode: the id the gateway's intent names, and the amount it was created for.
    order_id: uuid.UUID | None = None
    quoted: tuple[int, str] | None = None


async def quote(s: AsyncSession, items: dict[str, int]) -> tuple[int, str]:
    """What the items cost now, read without reserving (online checkout creates the
    gateway's intent for it first). Unknown skus: OutOfStock; mixed: MixedCurrencies."""
    rows = {
        sku: (unit, currency)
        for sku, unit, currency in await s.execute(
            select(Product.sku, Product.unit_amount, Product.currency).where(
                Product.sku.in_(list(items))
            )
        )
    }
    unknown = sorted(set(items) - set(rows))
    if unknown:
        raise OutOfStock(unknown)
    currencies = {currency for _, currency in rows.values()}
    if len(currencies) != 1:
        raise MixedCurrencies(sorted(currencies))
    return sum(q * rows[sku][0] for sku, q in items.items()), currencies.pop()


async def create_product(s: AsyncSession, values: dict[str, Any]) -> bool:
    """False if the sku exists already."""
    created = await s.scalar(
        insert(Product)
        .values(**values, total_stock=values["stock"])
        .on_conflict_do_nothing(index_elements=["sku"])
        .returning(Product.id)
    )
    return created is not None


async def create_order(s: AsyncSession, new: NewOrder) -> tuple[uuid.UUID, datetime]:
    """Reserves stock for every item or none (the caller's transaction rolls back on raise).
    Returns the order's id and the end of its payment window."""
    order_id = new.order_id or uuid.uuid4()
    expires_at = datetime.now(UTC) + timedelta(seconds=new.window_seconds)
    lines = []
    unavailable = []
    # Sorted, so two orders for the same skus lock rows in the same order (no deadlock).
    for sku in sorted(new.items):
        quantity = new.items[sku]
        row = (
            await s.execute(
                update(Product)
                .where(Product.sku == sku, Product.stock >= quantity)
                .values(stock=Product.stock - quantity)
                .returning(Product.name, Product.unit_amount, Product.currency)
            )
        ).one_or_none()
        if row is None:
            unavailable.append(sku)  # go on: the answer names every unavailable sku
        else:
            lines.append((sku, quantity, row.name, row.unit_amount, row.currency))
    if unavailable:
        raise OutOfStock(unavailable)
    currencies = {line[4] for line in lines}
    if len(currencies) != 1:
        raise MixedCurrencies(sorted(currencies))
    currency = currencies.pop()
    amount = sum(quantity * unit for _, quantity, _, unit, _ in lines)
    if new.quoted is not None and new.quoted != (amount, currency):
        raise PriceChanged(f"{new.quoted[0]} {new.quoted[1]} quoted, {amount} {currency} now")
    s.add(
        Order(
            id=order_id,
            customer_id=new.customer_id,
            status=OrderStatus.AWAITING_PAYMENT,
            amount=amount,
            currency=currency,
            attendee_name=new.attendee_name,
            attendee_email=new.attendee_email,
            expires_at=expires_at,
        )
    )
    await s.flush()
    s.add_all(
        OrderItem(order_id=order_id, sku=sku, name=name, quantity=q, unit_amount=unit)
        for sku, q, name, unit, _ in lines
    )
    s.add(
        Payment(
            order_id=order_id,
            provider=new.provider,
            intent_id=new.intent_id,
            status=PaymentStatus.PENDING,
            amount=amount,
            currency=currency,
        )
    )
    await journal.emit(
        s,
        "OrderCreated",
        order_id,
        keys.event("OrderCreated", order_id),
        {"amount": amount, "currency": currency, "customer_id": new.customer_id},
    )
    return order_id, expires_at


async def mark_paid(
    s: AsyncSession, order_id: uuid.UUID, provider: str, transaction_id: str
) -> bool:
    """UC-35 step 5, the one place an order becomes paid: only once this transaction's paid
    payment row exists, only from `awaiting_payment`, with its `OrderPaid` event.

    True if this call changed the order, False if it was paid already; NotPayable otherwise.
    """
    payment_stored = exists().where(
        and_(
            Payment.order_id == order_id,
            Payment.status == PaymentStatus.PAID,
            Payment.provider == provider,
            Payment.transaction_id == transaction_id,
        )
    )
    changed = await s.scalar(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.AWAITING_PAYMENT, payment_stored)
        .values(status=OrderStatus.PAID, paid_at=func.now(), updated_at=func.now())
        .returning(Order.id)
    )
    if changed is not None:
        # A newer attempt still open (the customer retried, then the older intent succeeded
        # after all) can no longer take money for this order.
        await s.execute(
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING)
            .values(status=PaymentStatus.CANCELLED)
        )
        await journal.emit(
            s,
            "OrderPaid",
            order_id,
            keys.event("OrderPaid", order_id),
            {"provider": provider, "transaction_id": transaction_id},
        )
        return True
    status = await s.scalar(select(Order.status).where(Order.id == order_id))
    if status == OrderStatus.PAID:
        return False
    raise NotPayable(status)


class AttemptRefused(Exception):
    """A new payment attempt is not possible now; the message says why (answered 409)."""


CANCEL_REASONS = ("timeout", "customer", "admin")


async def close_order(
    s: AsyncSession, order_id: uuid.UUID, reason: str, actor: str = "system:payment_window"
) -> tuple[bool, str | None, str | None]:
    """The one place an unpaid order is cancelled (window closed, customer, admin).

    The conditional UPDATE on the order's status is where a cancel and a confirmation racing
    it are decided: `mark_paid` updates the same row `WHERE status = 'awaiting_payment'`, so
    exactly one of them changes it. Only the call that changed it releases the stock, ends the
    pending attempt (`timeout` or `cancelled`) and writes `OrderCancelled`, so all of that
    happens once, with its audit entry (by `actor`). An order whose payment is stored (not yet
    marked paid) is not cancelled.
    Returns (changed, status after, the cancel reason if it is cancelled).
    """
    assert reason in CANCEL_REASONS
    # Money that arrived inside the window and is stored already wins: its confirmation is
    # finishing (step 5, perhaps waiting out an outage), so the order is not cancelled.
    payment_stored = exists().where(
        and_(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID)
    )
    changed = await s.scalar(
        update(Order)
        .where(
            Order.id == order_id,
            Order.status == OrderStatus.AWAITING_PAYMENT,
            ~payment_stored,
        )
        .values(
            status=OrderStatus.CANCELLED,
            cancel_reason=reason,
            cancelled_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Order.id)
    )
    if changed is None:
        row = (
            await s.execute(select(Order.status, Order.cancel_reason).where(Order.id == order_id))
        ).one_or_none()
        return (False, row.status, row.cancel_reason) if row else (False, None, None)
    attempt_status = PaymentStatus.TIMEOUT if reason == "timeout" else PaymentStatus.CANCELLED
    ended = (
        await s.execute(
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING)
            .values(status=attempt_status)
            .returning(Payment.provider, Payment.intent_id)
        )
    ).all()
    items = await release_stock(s, order_id)
    detail = {
        "reason": reason,
        "released": [{"sku": sku, "quantity": q} for sku, q in items],
        "attempts_ended": [
            {"provider": p, "intent_id": i, "status": str(attempt_status)} for p, i in ended
        ],
    }
    key = keys.event("OrderCancelled", order_id)
    await journal.emit(s, "OrderCancelled", order_id, key, detail)
    await journal.write_audit(
        s,
        [
            AuditRecord(
                str(order_id),
                actor,
                "order.cancelled",
                keys.status_changed(str(order_id), OrderStatus.CANCELLED),
                {"from": OrderStatus.AWAITING_PAYMENT, "to": OrderStatus.CANCELLED} | detail,
            )
        ],
    )
    return True, OrderStatus.CANCELLED, reason


async def release_stock(s: AsyncSession, order_id: uuid.UUID) -> list[tuple[str, int]]:
    """Gives an order's items back to stock (a cancel, a refund); its caller has just changed
    the order's status, so this runs once per order. Returns what it released."""
    # Sorted in Python, as create_order sorts: the database's collation may order skus
    # differently, and two lock orders for the same rows can deadlock.
    rows = await s.execute(
        select(OrderItem.sku, OrderItem.quantity).where(OrderItem.order_id == order_id)
    )
    items = sorted((sku, quantity) for sku, quantity in rows)
    for sku, quantity in items:
        # Units an admin withdrew while orders held them are written off first, not put
        # back on sale (`db.stock`). One statement: each side reads the row before it.
        await s.execute(
            update(Product)
            .where(Product.sku == sku)
            .values(
                stock=Product.stock + func.greatest(quantity - Product.to_withdraw, 0),
                total_stock=Product.total_stock - func.least(quantity, Product.to_withdraw),
                to_withdraw=func.greatest(Product.to_withdraw - quantity, 0),
            )
        )
    return items


async def new_attempt(s: AsyncSession, order_id: uuid.UUID, provider: str, intent_id: str) -> None:
    """A new payment attempt after a failed or cancelled one, while the window is open.

    The order row is locked first, as `close_order` locks it, so an attempt cannot be added to
    an order the window is closing at that moment."""
    row = (
        await s.execute(
            select(Order, Order.expires_at <= func.now())
            .where(Order.id == order_id)
            .with_for_update(of=Order)
        )
    ).one_or_none()
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


async def mark_placed(s: AsyncSession, order_id: uuid.UUID) -> bool:
    """`OrderPlaced`, after `OrderPaid`: the order is confirmed for fulfilment. Once."""
    paid = await s.scalar(
        select(Order.id).where(Order.id == order_id, Order.status == OrderStatus.PAID)
    )
    if paid is None:
        return False
    await journal.emit(s, "OrderPlaced", order_id, keys.event("OrderPlaced", order_id), {})
    return True


def refund_view(refund: Refund | None) -> dict[str, object] | None:
    if refund is None:
        return None
    return {
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
        "requested_by": refund.requested_by,
        "requested_at": refund.created_at.isoformat(),
        "completed_at": refund.completed_at.isoformat() if refund.completed_at else None,
    }


async def order_view(s: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    order = await s.get(Order, order_id)
    if order is None:
        return None
    items = (await s.scalars(select(OrderItem).where(OrderItem.order_id == order_id))).all()
    attempts = (
        await s.scalars(select(Payment).where(Payment.order_id == order_id).order_by(Payment.id))
    ).all()
    ticket = await s.scalar(select(Ticket).where(Ticket.order_id == order_id))
    refund = await s.scalar(select(Refund).where(Refund.order_id == order_id))
    payments = [
        {
            "provider": p.provider,
            "intent_id": p.intent_id,
            "transaction_id": p.transaction_id,
            "status": p.status,
            "amount": p.amount,
            "currency": p.currency,
            "checkout_url": None,
            "created_at": p.created_at.isoformat(),
        }
        for p in attempts
    ]
    return {
        "id": str(order.id),
        "customer_id": order.customer_id,
        "status": order.status,
        "amount": order.amount,
        "currency": order.currency,
        "items": [
            {"sku": i.sku, "name": i.name, "quantity": i.quantity, "unit_amount": i.unit_amount}
            for i in items
        ],
        "attendee": (
            {"name": order.attendee_name, "email": order.attendee_email}
            if order.attendee_name or order.attendee_email
            else None
        ),
        "payment": payments[-1] if payments else None,
        "payments": payments,
        "ticket": None
        if ticket is None
        else {
            "code": ticket.code,
            "url": f"/api/v1/orders/{order.id}/ticket",  # the PDF (owner or admin)
            "issued_at": ticket.issued_at.isoformat(),
        },
        "created_at": order.created_at.isoformat(),
        "expires_at": order.expires_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "cancelled_at": order.cancelled_at.isoformat() if order.cancelled_at else None,
        "cancel_reason": order.cancel_reason,
        "refund": refund_view(refund),
    }


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
