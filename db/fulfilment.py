"""A vendor's answer to a paid order that waits for it: accepted, or rejected and refunded.

The one place the race between accept, reject and the end of the window is decided: each is
one conditional UPDATE of the order `WHERE fulfilment = 'pending_vendor_acceptance'`, so
exactly one of them changes it, as `close_order` and `mark_paid` decide payment against the
payment window. Only the call that changed it writes its event (`VendorAccepted`,
`VendorRejected`), its audit entry and, for a rejection, asks for the full refund, all in the
caller's transaction. The refund's workflow is started after the commit by the caller
(`api.vendor`, `activities.fulfilment`); a start that is lost is found again by them and by
the reconciliation sweep (a pending refund with no workflow running).

Accepting also needs the order to be paid (not refunded meanwhile by its owner); a rejection
ends the wait whatever happened to the money, and asks for a refund only while it is paid.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order, Payment
from db.refunds import RefundAsked, request_refund
from domain import keys
from domain.confirmation import AuditRecord
from domain.fulfilment import FulfilmentSeen
from domain.statuses import VENDOR_TIMEOUT, FulfilmentStatus, OrderStatus, PaymentStatus

PENDING = FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE
# The window's own rejection: its reason and its actor.
TIMEOUT = VENDOR_TIMEOUT
WINDOW = "system:vendor_window"


class NotPending(Exception):
    """The order is not waiting for its vendor (any more): a 409 with why."""

    def __init__(self, fulfilment: str | None, status: str | None, ended: bool = False) -> None:
        if fulfilment is None:
            why = "the order does not wait for a vendor's acceptance"
        elif fulfilment == PENDING and ended:
            why = "the time to accept the order has ended; it is being rejected and refunded"
        elif fulfilment == PENDING:
            why = f"the order is {status}; only a paid order can be accepted"
        else:
            why = f"the order was {fulfilment} already"
        super().__init__(why)
        self.fulfilment = fulfilment


@dataclass(frozen=True)
class Decided:
    """What an accept or reject changed, for what follows its commit."""

    order_id: uuid.UUID
    fulfilment: FulfilmentStatus
    # The order's payment: its confirmation workflow waits for this answer, its refund
    # workflow sends a rejected order's money back. None only for an order never paid.
    provider: str | None
    transaction_id: str | None
    refund: RefundAsked | None = None  # a rejection's refund, if the order was still paid


async def accept(s: AsyncSession, order_id: uuid.UUID, actor: str) -> Decided:
    """`accepted`, with `VendorAccepted`; NotPending unless it was pending and paid."""
    vendor = (
        await s.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.fulfilment == PENDING,
                Order.status == OrderStatus.PAID,
                # Not after the window's end, even while the keeper has yet to close it:
                # the order is then the window's, whose rejection refunds it.
                Order.accept_by > func.now(),
            )
            .values(fulfilment=FulfilmentStatus.ACCEPTED, updated_at=func.now())
            .returning(Order.vendor)
        )
    ).one_or_none()
    if vendor is None:
        raise await _not_pending(s, order_id)
    detail = {"vendor": vendor.vendor}
    await _record(s, order_id, FulfilmentStatus.ACCEPTED, actor, detail)
    provider, transaction_id = await _payment_of(s, order_id)
    return Decided(order_id, FulfilmentStatus.ACCEPTED, provider, transaction_id)


async def reject(s: AsyncSession, order_id: uuid.UUID, actor: str, reason: str) -> Decided:
    """`rejected` with `reason`, `VendorRejected`, and the full refund asked for (by `actor`)
    if the order is still paid; NotPending unless it was pending."""
    row = (
        await s.execute(
            update(Order)
            .where(Order.id == order_id, Order.fulfilment == PENDING)
            .values(
                fulfilment=FulfilmentStatus.REJECTED, reject_reason=reason, updated_at=func.now()
            )
            .returning(Order.vendor, Order.status)
        )
    ).one_or_none()
    if row is None:
        raise await _not_pending(s, order_id)
    await _record(
        s, order_id, FulfilmentStatus.REJECTED, actor, {"vendor": row.vendor, "reason": reason}
    )
    refund = None
    if row.status == OrderStatus.PAID:
        # Whoever rejects may refund: the vendor's word, or the window's, is the policy here.
        refund = await request_refund(
            s,
            order_id,
            actor=actor,
            is_admin=True,
            reason=f"rejected by the vendor: {reason}",
            window_seconds=0,
        )
    provider, transaction_id = await _payment_of(s, order_id)
    return Decided(order_id, FulfilmentStatus.REJECTED, provider, transaction_id, refund)


async def _record(
    s: AsyncSession,
    order_id: uuid.UUID,
    to: FulfilmentStatus,
    actor: str,
    detail: dict[str, str | None],
) -> None:
    """The decision's event and audit entry, once each (their keys)."""
    event = "VendorAccepted" if to == FulfilmentStatus.ACCEPTED else "VendorRejected"
    await journal.emit(s, event, order_id, keys.event(event, order_id), detail | {"by": actor})
    await journal.write_audit(
        s,
        [
            AuditRecord(
                str(order_id),
                actor,
                "order.fulfilment_changed",
                keys.fulfilment_changed(str(order_id), to),
                {"from": PENDING, "to": to} | detail,
            )
        ],
    )


async def _not_pending(s: AsyncSession, order_id: uuid.UUID) -> NotPending:
    row = (
        await s.execute(
            select(Order.fulfilment, Order.status, Order.accept_by <= func.now()).where(
                Order.id == order_id
            )
        )
    ).one_or_none()
    return NotPending(*row) if row else NotPending(None, None)


async def _payment_of(s: AsyncSession, order_id: uuid.UUID) -> tuple[str | None, str | None]:
    """The payment that paid the order (paid, or refunded since)."""
    row = (
        await s.execute(
            select(Payment.provider, Payment.transaction_id)
            .where(
                Payment.order_id == order_id,
                Payment.status.in_((PaymentStatus.PAID, PaymentStatus.REFUNDED)),
            )
            .order_by(Payment.id)
            .limit(1)
        )
    ).one_or_none()
    return (row.provider, row.transaction_id) if row else (None, None)


async def fulfilment_seen(s: AsyncSession, order_id: uuid.UUID) -> FulfilmentSeen:
    """Where the order's acceptance stands, as its row has it."""
    row = (
        await s.execute(select(Order.fulfilment, Order.accept_by).where(Order.id == order_id))
    ).one()
    return FulfilmentSeen(row.fulfilment, row.accept_by and row.accept_by.isoformat())
