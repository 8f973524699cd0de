"""Personal data kept no longer than it is needed (UC-35 leaves retention open; pretix has a
shredder). Orders that ended before a cutoff lose their attendee's name and address, their
ticket PDF (which prints both), and the address their mails went to. Amounts, statuses, ids,
ticket codes, events and the audit trail stay, so the books still balance and the invariant
check stays clean. Idempotent: what is shredded already is not counted again.

An order has ended when it was cancelled or refunded, or paid, before the cutoff: an
operator picks the age past the event the tickets were for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Notification, Order, Ticket
from domain.statuses import OrderStatus

SHREDDED = "[shredded]"


@dataclass(frozen=True)
class Shredded:
    orders: int  # attendee name and address removed
    tickets: int  # stored PDF removed
    mails: int  # recipient address removed


async def shred(s: AsyncSession, older_than: timedelta) -> Shredded:
    cutoff = func.now() - older_than
    ended = select(Order.id).where(
        or_(
            and_(
                Order.status.in_([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
                func.coalesce(Order.cancelled_at, Order.updated_at) < cutoff,
            ),
            and_(Order.status == OrderStatus.PAID, Order.paid_at < cutoff),
        )
    )
    orders = await s.execute(
        update(Order)
        .where(
            Order.id.in_(ended),
            or_(Order.attendee_name.is_not(None), Order.attendee_email.is_not(None)),
        )
        .values(attendee_name=None, attendee_email=None)
    )
    tickets = await s.execute(
        update(Ticket).where(Ticket.order_id.in_(ended), Ticket.pdf.is_not(None)).values(pdf=None)
    )
    mails = await s.execute(
        update(Notification)
        .where(Notification.order_id.in_(ended), Notification.recipient != SHREDDED)
        .values(recipient=SHREDDED)
    )
    return Shredded(orders.rowcount, tickets.rowcount, mails.rowcount)  # type: ignore[attr-defined]
