"""Refunds: asked for by an owner (within the refund window) or an admin, finished when the
gateway says so. Full refunds only, one per payment (a unique key), so money never goes back
twice however often a request or a gateway's notice is repeated.

The order row's conditional update decides, as for paying and cancelling: only the call that
turns a `paid` order `refunded` releases its stock and writes `PaymentRefunded`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.cases import close_open_cases
from db.models import Order, Payment, ReconciliationCase, Refund
from db.orders import release_stock
from domain import keys
from domain.confirmation import AuditRecord
from domain.payments import CaseKind, PaymentState, RefundNotice
from domain.statuses import CaseState, OrderStatus, PaymentStatus, RefundStatus


class RefundRefused(Exception):
    """Policy says no (not paid, or past the owner's refund window): a 409 with the reason."""


@dataclass(frozen=True)
class RefundAsked:
    provider: str
    transaction_id: str
    status: str  # the refund's status after the request
    new: bool  # False: a refund was pending (or done) already, nothing new was asked


def new_ask() -> dict[str, str]:
    """A refund's `detail` when it is asked for: the ask's own id, from which the gateway's
    idempotency key is made (`gateway_key`). Every retry and restart of one ask sends the
    same key (the gateway answers it with the same refund, never a second); asking again
    after a failure is a new ask, so a new key (the gateway answers a key's first result
    again, a failed one too)."""
    return {"ask": str(uuid.uuid4())}


def gateway_key(refund: Refund) -> str:
    """The idempotency key of a refund's ask at the gateway. Rows asked for before asks had
    ids keep the key they were first sent with."""
    ask = (refund.detail or {}).get("ask")
    return f"refund-{refund.transaction_id}-{ask}" if ask else f"refund-{refund.transaction_id}"


async def request_refund(
    s: AsyncSession,
    order_id: uuid.UUID,
    *,
    actor: str,
    is_admin: bool,
    reason: str | None,
    window_seconds: int,
) -> RefundAsked:
    order = await s.scalar(select(Order).where(Order.id == order_id).with_for_update())
    assert order is not None  # the route found it
    existing = await s.scalar(select(Refund).where(Refund.order_id == order_id))
    if existing is not None and existing.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED):
        return RefundAsked(existing.provider, existing.transaction_id, existing.status, False)
    if order.status != OrderStatus.PAID or order.paid_at is None:
        raise RefundRefused(f"the order is {order.status}; only a paid order can be refunded")
    deadline = order.paid_at + timedelta(seconds=window_seconds)
    if not is_admin and datetime.now(UTC) > deadline:
        raise RefundRefused(
            f"refunds could be asked for until {deadline.isoformat(timespec='seconds')}; "
            "ask the organizer"
        )
    payment = await s.scalar(
        select(Payment).where(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID)
    )
    assert payment is not None and payment.transaction_id is not None  # a paid order's
    if existing is not None:  # failed before: asked again, a new ask (a new gateway key)
        existing.status, existing.reason, existing.requested_by = (
            RefundStatus.PENDING,
            reason,
            actor,
        )
        existing.completed_at, existing.gateway_refund_id = None, None
        existing.detail = new_ask()
    else:
        s.add(
            Refund(
                provider=payment.provider,
                transaction_id=payment.transaction_id,
                order_id=order_id,
                amount=payment.amount,
                currency=payment.currency,
                status=RefundStatus.PENDING,
                reason=reason,
                requested_by=actor,
                detail=new_ask(),
            )
        )
    await s.flush()
    await _audit_asked(
        s,
        str(order_id),
        actor,
        payment.provider,
        payment.transaction_id,
        {"reason": reason, "amount": payment.amount, "currency": payment.currency},
    )
    return RefundAsked(payment.provider, payment.transaction_id, RefundStatus.PENDING, True)


async def ask_parked_refund(
    s: AsyncSession,
    provider: str,
    transaction_id: str,
    amount: int,
    currency: str,
    *,
    actor: str,
    reason: str,
) -> str:
    """An admin sends parked money back (unmatched, mismatched, late): a `pending` refund of
    what the gateway says was paid. Its order is the one the money was stored against, if
    any (a late payment's cancelled order), never one it merely claimed. Asked again after
    a failure it is pending again; while pending or done, nothing new. Returns the refund's
    status."""
    stored = await s.scalar(
        select(Payment.order_id).where(
            Payment.provider == provider, Payment.transaction_id == transaction_id
        )
    )
    asked = await s.scalar(
        insert(Refund)
        .values(
            provider=provider,
            transaction_id=transaction_id,
            order_id=stored,
            amount=amount,
            currency=currency,
            status=RefundStatus.PENDING,
            reason=reason,
            requested_by=actor,
            detail=new_ask(),
        )
        .on_conflict_do_update(
            constraint="uq_refunds_provider_transaction",
            set_={
                "status": RefundStatus.PENDING,
                "reason": reason,
                "requested_by": actor,
                "gateway_refund_id": None,
                "detail": new_ask(),
            },
            where=Refund.status == RefundStatus.FAILED,
        )
        .returning(Refund.id)
    )
    if asked is not None:
        await _audit_asked(
            s,
            str(stored) if stored else None,
            actor,
            provider,
            transaction_id,
            {"reason": reason, "amount": amount, "currency": currency, "parked": True},
        )
    return await _status_of(s, provider, transaction_id)


async def _status_of(s: AsyncSession, provider: str, transaction_id: str) -> str:
    """The status of the refund of one payment, which exists."""
    status = await s.scalar(
        select(Refund.status).where(
            Refund.provider == provider, Refund.transaction_id == transaction_id
        )
    )
    assert status is not None
    return status


async def _audit_asked(
    s: AsyncSession,
    order_id: str | None,
    actor: str,
    provider: str,
    transaction_id: str,
    detail: dict[str, object],
) -> None:
    """The audit entry of one ask; every ask is its own entry (a new key each time)."""
    await journal.write_audit(
        s,
        [
            AuditRecord(
                order_id,
                actor,
                "refund.requested",
                f"refund.requested:{provider}:{transaction_id}:{uuid.uuid4()}",
                detail,
            )
        ],
    )


async def finish_refund(s: AsyncSession, notice: RefundNotice, requested_by: str) -> str:
    """Applies the gateway's answer, once. Returns what it did: `succeeded`, `failed`,
    `already` (told before), `partial` or `unknown` (each of those two opens a case)."""
    payment, refund = await _lock_refund(s, notice, requested_by)
    if refund is None:
        await _open_case(s, notice, None, "a refund for a payment paysaga never stored")
        return "unknown"
    if refund.status == RefundStatus.SUCCEEDED:
        return "already"
    refund.gateway_refund_id = notice.refund_id
    refund.detail = refund.detail | {"event_id": notice.event_id, "event_type": notice.event_type}
    if notice.status != RefundStatus.SUCCEEDED:
        await _refund_failed(s, notice, refund)
        return RefundStatus.FAILED
    if (notice.amount, notice.currency) != (refund.amount, refund.currency):
        await _open_case(
            s,
            notice,
            refund,
            f"the gateway refunded {notice.amount} {notice.currency} of "
            f"{refund.amount} {refund.currency}; paysaga refunds in full",
        )
        return "partial"
    await _refund_succeeded(s, notice, refund, payment)
    return RefundStatus.SUCCEEDED


async def _lock_refund(
    s: AsyncSession, notice: RefundNotice, requested_by: str
) -> tuple[Payment | None, Refund | None]:
    """The notice's payment and refund rows, locked in that order. A refund not asked for
    here (done at the gateway's dashboard) is added first, for the money paysaga knows of."""
    payment = await s.scalar(
        select(Payment)
        .where(Payment.provider == notice.provider, Payment.transaction_id == notice.transaction_id)
        .with_for_update()
    )
    # What went back, if the refund was not asked for here: the stored payment or, for money
    # never stored (unmatched, mismatched), what its open case says was paid.
    paid: tuple[uuid.UUID | None, int, str] | None = None
    if payment is not None:
        paid = (payment.order_id, payment.amount, payment.currency)
    else:
        parked = await s.scalar(
            select(ReconciliationCase)
            .where(
                ReconciliationCase.provider == notice.provider,
                ReconciliationCase.transaction_id == notice.transaction_id,
                ReconciliationCase.kind != CaseKind.REFUND_FAILED,
            )
            .order_by(ReconciliationCase.id)
            .limit(1)
        )
        if parked is not None:
            paid = (None, parked.amount, parked.currency)
    if paid is not None:
        await s.execute(
            insert(Refund)
            .values(
                provider=notice.provider,
                transaction_id=notice.transaction_id,
                order_id=paid[0],
                amount=paid[1],
                currency=paid[2],
                status=RefundStatus.PENDING,
                reason="refunded at the gateway",
                requested_by=requested_by,
            )
            .on_conflict_do_nothing(constraint="uq_refunds_provider_transaction")
        )
    refund = await s.scalar(
        select(Refund)
        .where(Refund.provider == notice.provider, Refund.transaction_id == notice.transaction_id)
        .with_for_update()
    )
    return payment, refund


async def _refund_failed(s: AsyncSession, notice: RefundNotice, refund: Refund) -> None:
    """The gateway failed the refund: `failed`, with its event and a case for the money."""
    refund.status, refund.completed_at = RefundStatus.FAILED, func.now()
    await journal.emit(
        s,
        "RefundFailed",
        refund.order_id,
        keys.event("RefundFailed", notice.provider, notice.transaction_id, notice.refund_id),
        {
            "provider": notice.provider,
            "transaction_id": notice.transaction_id,
            "amount": refund.amount,
            "currency": refund.currency,
        },
    )
    await _open_case(
        s,
        notice,
        refund,
        f"the gateway failed refund {notice.refund_id} ({notice.event_type})",
    )


async def _refund_succeeded(
    s: AsyncSession, notice: RefundNotice, refund: Refund, payment: Payment | None
) -> None:
    """The money went back in full: the payment and a still-paid order become `refunded`
    (the order's conditional update decides who releases its stock), `PaymentRefunded` is
    written and the refund's failure cases are closed."""
    refund.status, refund.completed_at = RefundStatus.SUCCEEDED, func.now()
    refunded, released = None, []
    if payment is not None:
        await s.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.status == PaymentStatus.PAID)
            .values(status=PaymentStatus.REFUNDED)
        )
        refunded = await s.scalar(
            update(Order)
            .where(Order.id == payment.order_id, Order.status == OrderStatus.PAID)
            .values(status=OrderStatus.REFUNDED, updated_at=func.now())
            .returning(Order.id)
        )
        released = await release_stock(s, payment.order_id) if refunded is not None else []
    await journal.payment_refunded(
        s,
        refund.order_id,
        notice.provider,
        notice.transaction_id,
        notice.amount,
        notice.currency,
        {
            "refund_reference": notice.refund_id,
            "reason": refund.reason,
            "applied_to_order": refunded is not None,
            "released": [{"sku": sku, "quantity": q} for sku, q in released],
        },
    )
    await close_open_cases(
        s,
        notice.provider,
        notice.transaction_id,
        PaymentState.REFUNDED,
        kind=CaseKind.REFUND_FAILED,
    )
    await journal.write_audit(
        s,
        [
            AuditRecord(
                str(refund.order_id) if refund.order_id else None,
                f"gateway:{notice.provider}",
                "refund.succeeded",
                keys.payment_refunded(notice.provider, notice.transaction_id),
                {"refund_id": notice.refund_id, "amount": notice.amount},
            )
        ],
    )


async def _open_case(
    s: AsyncSession, notice: RefundNotice, refund: Refund | None, reason: str
) -> None:
    """A `refund_failed` case for the money (what was paid, not what the notice says)."""
    await s.execute(
        insert(ReconciliationCase)
        .values(
            kind=CaseKind.REFUND_FAILED,
            provider=notice.provider,
            transaction_id=notice.transaction_id,
            order_id=refund.order_id if refund else None,
            amount=refund.amount if refund else notice.amount,
            currency=refund.currency if refund else notice.currency,
            detail={"reason": reason, "refund_id": notice.refund_id},
        )
        .on_conflict_do_update(
            constraint="uq_cases_provider_tx_kind",
            set_={"state": CaseState.OPEN, "resolution": None, "resolved_at": None},
        )
    )
