"""An order as its owner and the admins read it: items, payment attempts, ticket, refund; and
a vendor's orders, a page at a time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order, OrderItem, Payment, Refund, Ticket
from domain.statuses import FulfilmentStatus, OrderStatus, PaymentStatus, RefundStatus
from domain.views import (
    AttendeeView,
    ItemView,
    OrderView,
    PaymentView,
    RefundView,
    TicketView,
    VendorOrderPage,
)


def _refund_view(refund: Refund | None) -> RefundView | None:
    if refund is None:
        return None
    return RefundView(
        status=RefundStatus(refund.status),
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        requested_by=refund.requested_by,
        requested_at=refund.created_at,
        completed_at=refund.completed_at,
    )


def _payment_view(p: Payment) -> PaymentView:
    return PaymentView(
        provider=p.provider,
        intent_id=p.intent_id,
        transaction_id=p.transaction_id,
        status=PaymentStatus(p.status),
        amount=p.amount,
        currency=p.currency,
        checkout_url=None,
        created_at=p.created_at,
    )


def _ticket_view(order_id: uuid.UUID, ticket: Ticket | None) -> TicketView | None:
    if ticket is None:
        return None
    return TicketView(
        code=ticket.code, url=f"/api/v1/orders/{order_id}/ticket", issued_at=ticket.issued_at
    )


async def order_view(s: AsyncSession, order_id: uuid.UUID) -> OrderView | None:
    order = await s.get(Order, order_id)
    if order is None:
        return None
    items = (await s.scalars(select(OrderItem).where(OrderItem.order_id == order_id))).all()
    attempts = (
        await s.scalars(select(Payment).where(Payment.order_id == order_id).order_by(Payment.id))
    ).all()
    ticket = await s.scalar(select(Ticket).where(Ticket.order_id == order_id))
    refund = await s.scalar(select(Refund).where(Refund.order_id == order_id))
    return _view(
        order,
        items,
        [_payment_view(p) for p in attempts],
        ticket=_ticket_view(order.id, ticket),
        refund=_refund_view(refund),
        ended=(order.paid_at, order.cancelled_at, order.cancel_reason),
    )


async def order_views(s: AsyncSession, order_ids: Sequence[uuid.UUID]) -> list[OrderView]:
    """Several orders as `order_view` reads each, in the given order, in five queries."""
    orders = {o.id: o for o in await s.scalars(select(Order).where(Order.id.in_(order_ids)))}
    items = await s.scalars(
        select(OrderItem).where(OrderItem.order_id.in_(order_ids)).order_by(OrderItem.id)
    )
    attempts = await s.scalars(
        select(Payment).where(Payment.order_id.in_(order_ids)).order_by(Payment.id)
    )
    tickets = {
        t.order_id: t for t in await s.scalars(select(Ticket).where(Ticket.order_id.in_(order_ids)))
    }
    refunds = {
        r.order_id: r for r in await s.scalars(select(Refund).where(Refund.order_id.in_(order_ids)))
    }
    items_of: dict[uuid.UUID, list[OrderItem]] = {key: [] for key in orders}
    for item in items:
        items_of[item.order_id].append(item)
    payments_of: dict[uuid.UUID, list[PaymentView]] = {key: [] for key in orders}
    for attempt in attempts:
        payments_of[attempt.order_id].append(_payment_view(attempt))
    return [
        _view(
            order,
            items_of[key],
            payments_of[key],
            ticket=_ticket_view(key, tickets.get(key)),
            refund=_refund_view(refunds.get(key)),
            ended=(order.paid_at, order.cancelled_at, order.cancel_reason),
        )
        for key in order_ids
        if (order := orders.get(key)) is not None
    ]


class BadCursor(ValueError):
    """`after` names no order of this list."""


async def vendor_page(
    s: AsyncSession,
    vendor: str | None,
    fulfilment: FulfilmentStatus | None,
    after: uuid.UUID | None,
    limit: int,
) -> VendorOrderPage:
    """A vendor's orders (None: every vendor's), newest first, `limit` at a time after the
    order `after`. Only orders that were paid: a checkout never paid is not the vendor's
    business (nor its customer's data). `fulfilment` filters by where acceptance stands."""
    query = select(Order.id, Order.created_at).where(Order.paid_at.is_not(None))
    query = query.where(Order.vendor.is_not(None) if vendor is None else Order.vendor == vendor)
    if fulfilment is not None:
        query = query.where(Order.fulfilment == fulfilment)
    if after is not None:
        start = await s.scalar(select(Order.created_at).where(Order.id == after))
        if start is None:
            raise BadCursor(f"no order {after}")
        query = query.where(tuple_(Order.created_at, Order.id) < tuple_(start, after))
    rows = (
        await s.execute(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1))
    ).all()
    ids = [row.id for row in rows[:limit]]
    more = len(rows) > limit
    return VendorOrderPage(orders=await order_views(s, ids), next=str(ids[-1]) if more else None)


def placed_view(order: Order, items: list[OrderItem], payment: Payment) -> OrderView:
    """A new order as `order_view` reads it, from the rows its checkout is writing: no
    ticket, no refund, one pending attempt. Every attribute read here was set by the caller
    (no lazy load, no server default read back)."""
    return _view(order, items, [_payment_view(payment)])


def opened_view(
    placed: OrderView, intent_id: str, attendee_name: str | None, attendee_email: str | None
) -> OrderView:
    """The placed order once `attach_intent` wrote its intent and attendee (online
    checkout's second step), as `order_view` would read it."""
    attempt = placed.payments[-1].model_copy(update={"intent_id": intent_id})
    return placed.model_copy(
        update={
            "payment": attempt,
            "payments": [attempt],
            "attendee": (
                AttendeeView(name=attendee_name, email=attendee_email)
                if attendee_name or attendee_email
                else None
            ),
        }
    )


def _view(
    order: Order,
    items: Sequence[OrderItem],
    payments: list[PaymentView],
    ticket: TicketView | None = None,
    refund: RefundView | None = None,
    ended: tuple[datetime | None, datetime | None, str | None] = (None, None, None),
) -> OrderView:
    paid_at, cancelled_at, cancel_reason = ended
    has_attendee = order.attendee_name or order.attendee_email
    return OrderView(
        id=order.id,
        customer_id=order.customer_id,
        status=OrderStatus(order.status),
        amount=order.amount,
        currency=order.currency,
        items=[
            ItemView(sku=i.sku, name=i.name, quantity=i.quantity, unit_amount=i.unit_amount)
            for i in items
        ],
        attendee=(
            AttendeeView(name=order.attendee_name, email=order.attendee_email)
            if has_attendee
            else None
        ),
        payment=payments[-1] if payments else None,
        payments=payments,
        ticket=ticket,
        created_at=order.created_at,
        expires_at=order.expires_at,
        paid_at=paid_at,
        cancelled_at=cancelled_at,
        cancel_reason=cancel_reason,
        refund=refund,
        vendor=order.vendor,
        fulfilment=FulfilmentStatus(order.fulfilment) if order.fulfilment else None,
        accept_by=order.accept_by,
        reject_reason=order.reject_reason,
    )
