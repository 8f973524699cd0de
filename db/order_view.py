"""An order as its owner and the admins read it: items, payment attempts, ticket, refund."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order, OrderItem, Payment, Refund, Ticket
from domain.statuses import FulfilmentStatus, OrderStatus, PaymentStatus, RefundStatus
from domain.views import AttendeeView, ItemView, OrderView, PaymentView, RefundView, TicketView


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
