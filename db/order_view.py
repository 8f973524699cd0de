"""An order as its owner and the admins read it: items, payment attempts, ticket, refund."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Order, OrderItem, Payment, Refund, Ticket


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
