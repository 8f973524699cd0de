"""Orders and products as the API reads and writes them (the saga's writes are activities)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order, OrderItem, Payment, Product, Ticket
from domain import keys
from domain.payments import OrderStatus, PaymentStatus


class OutOfStock(Exception):
    pass


class NotPayable(Exception):
    """The order is neither awaiting payment nor paid (cancelled, refunded)."""

    def __init__(self, status: str | None) -> None:
        super().__init__(f"order is {status or 'missing'}, cannot be marked paid")
        self.status = status


class MixedCurrencies(Exception):
    pass


@dataclass(frozen=True)
class NewOrder:
    customer_id: str
    items: dict[str, int]  # sku -> quantity
    provider: str
    intent_id: str
    attendee_name: str | None
    attendee_email: str | None


async def create_product(s: AsyncSession, values: dict[str, Any]) -> bool:
    """False if the sku exists already."""
    created = await s.scalar(
        insert(Product)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sku"])
        .returning(Product.id)
    )
    return created is not None


async def create_order(s: AsyncSession, new: NewOrder) -> uuid.UUID:
    """Reserves stock for every item or none (the caller's transaction rolls back on raise)."""
    order_id = uuid.uuid4()
    lines = []
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
            raise OutOfStock(sku)
        lines.append((sku, quantity, row.name, row.unit_amount, row.currency))
    currencies = {line[4] for line in lines}
    if len(currencies) != 1:
        raise MixedCurrencies(sorted(currencies))
    currency = currencies.pop()
    amount = sum(quantity * unit for _, quantity, _, unit, _ in lines)
    s.add(
        Order(
            id=order_id,
            customer_id=new.customer_id,
            status=OrderStatus.AWAITING_PAYMENT,
            amount=amount,
            currency=currency,
            attendee_name=new.attendee_name,
            attendee_email=new.attendee_email,
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
    return order_id


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


async def order_view(s: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    order = await s.get(Order, order_id)
    if order is None:
        return None
    items = (await s.scalars(select(OrderItem).where(OrderItem.order_id == order_id))).all()
    payment = await s.scalar(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.id.desc()).limit(1)
    )
    ticket = await s.scalar(select(Ticket).where(Ticket.order_id == order_id))
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
        "payment": None
        if payment is None
        else {
            "provider": payment.provider,
            "intent_id": payment.intent_id,
            "transaction_id": payment.transaction_id,
            "status": payment.status,
            "checkout_url": None,
        },
        "ticket": None
        if ticket is None
        else {"code": ticket.code, "issued_at": ticket.issued_at.isoformat()},
        "created_at": order.created_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
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
