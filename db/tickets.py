"""The ticket: one per paid order, an unguessable code, and its PDF rendered and stored once.

Whoever needs it first issues it (the confirmation's step 8, the confirmation mail, the
attendee's download): the code is inserted once per order and the PDF written only where
none is stored yet, so concurrent callers end with the same code and the same document.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Order, OrderItem, Payment, Ticket
from domain.statuses import FulfilmentStatus, OrderStatus, PaymentStatus
from tickets.pdf import TicketDocument, TicketLine
from tickets.pool import render


class NotPaid(Exception):
    """The order is not paid (yet, or any more), or its vendor has not accepted it (yet, or
    rejected it): it has no valid ticket."""


# SEQ-BP-002 (issue 28): an order that waits for its vendor has its ticket once accepted.
NO_TICKET_YET = (FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE, FulfilmentStatus.REJECTED)


async def issue_code(s: AsyncSession, order_id: uuid.UUID) -> str:
    await s.execute(
        insert(Ticket)
        .values(order_id=order_id, code=secrets.token_urlsafe(18))
        .on_conflict_do_nothing(index_elements=["order_id"])
    )
    code = await s.scalar(select(Ticket.code).where(Ticket.order_id == order_id))
    assert code is not None
    return code


async def _document(s: AsyncSession, order_id: uuid.UUID, organizer: str) -> TicketDocument:
    order = await s.get(Order, order_id)
    if (
        order is None
        or order.status != OrderStatus.PAID
        or order.paid_at is None
        or order.fulfilment in NO_TICKET_YET
    ):
        raise NotPaid(f"order {order_id} is {order.status if order else 'unknown'}")
    items = (
        await s.scalars(
            select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.id)
        )
    ).all()
    payment = await s.scalar(
        select(Payment).where(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID)
    )
    return TicketDocument(
        organizer=organizer,
        order_id=str(order_id),
        ticket_code=await issue_code(s, order_id),
        attendee_name=order.attendee_name,
        attendee_email=order.attendee_email,
        items=tuple(TicketLine(i.name, i.sku, i.quantity, i.unit_amount) for i in items),
        amount=order.amount,
        currency=order.currency,
        provider=payment.provider if payment else "",
        payment_reference=(payment.transaction_id or payment.intent_id) if payment else "",
        paid_at=order.paid_at,
    )


@dataclass(frozen=True)
class TicketFile:
    code: str
    pdf: bytes


async def ticket_pdf(
    sessions: async_sessionmaker[AsyncSession],
    order_id: uuid.UUID,
    organizer: str,
    processes: int = 0,
) -> TicketFile:
    """The ticket's code and stored PDF, rendered and stored first if there is none (in a
    thread, or in a pool of `processes`: `tickets.pool`). Raises `NotPaid`."""
    async with sessions.begin() as s:
        row = (
            await s.execute(
                select(Order.status, Order.fulfilment, Ticket.code, Ticket.pdf)
                .outerjoin(Ticket, Ticket.order_id == Order.id)
                .where(Order.id == order_id)
            )
        ).one_or_none()
        if row is None or row.status != OrderStatus.PAID or row.fulfilment in NO_TICKET_YET:
            raise NotPaid(f"order {order_id} is {row.status if row else 'unknown'}")
        if row.pdf is not None:
            return TicketFile(row.code, row.pdf)
        document = await _document(s, order_id, organizer)
    # Rendering costs about 50 ms of CPU: off the event loop, outside a transaction.
    pdf = await render(document, processes)
    async with sessions.begin() as s:
        await s.execute(
            update(Ticket).where(Ticket.order_id == order_id, Ticket.pdf.is_(None)).values(pdf=pdf)
        )
        kept = (
            await s.execute(select(Ticket.code, Ticket.pdf).where(Ticket.order_id == order_id))
        ).one()
    assert kept.pdf is not None
    return TicketFile(kept.code, kept.pdf)
