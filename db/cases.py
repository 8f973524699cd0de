"""Reconciliation cases as operators read them (the API and `paysaga admin cases`), and
one payment with its order and cases (`paysaga admin show`)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Payment, ReconciliationCase
from db.order_view import order_view
from domain.statuses import CaseState, PaymentStatus
from domain.views import CaseView, PaymentDetails, StoredPaymentView


def case_view(c: ReconciliationCase) -> CaseView:
    return CaseView(
        id=c.id,
        kind=c.kind,
        provider=c.provider,
        transaction_id=c.transaction_id,
        order_id=c.order_id,
        amount=c.amount,
        currency=c.currency,
        opened_at=c.opened_at,
        state=CaseState(c.state),
        reason=c.detail.get("reason"),
        resolution=c.resolution,
        resolved_at=c.resolved_at,
    )


async def list_cases(
    sessions: async_sessionmaker[AsyncSession],
    *,
    include_resolved: bool = False,
    after: int = 0,
    limit: int | None = None,
) -> list[CaseView]:
    """Oldest first, by id; a page is the cases with ids past `after`."""
    query = (
        select(ReconciliationCase)
        .where(ReconciliationCase.id > after)
        .order_by(ReconciliationCase.id)
        .limit(limit)
    )
    if not include_resolved:
        query = query.where(ReconciliationCase.state == CaseState.OPEN)
    async with sessions() as s:
        return [case_view(c) for c in await s.scalars(query)]


def payment_view(p: Payment) -> StoredPaymentView:
    return StoredPaymentView(
        id=p.id,
        provider=p.provider,
        transaction_id=p.transaction_id,
        intent_id=p.intent_id,
        order_id=p.order_id,
        status=PaymentStatus(p.status),
        amount=p.amount,
        currency=p.currency,
        created_at=p.created_at,
        confirmed_at=p.confirmed_at,
    )


async def payment_details(
    sessions: async_sessionmaker[AsyncSession], provider: str, transaction_id: str
) -> PaymentDetails:
    """One payment by its gateway key: its row, its order (`order_view`) and every case it
    opened, open and resolved, oldest first. Each is None (the cases empty) if there is none.

    The order is the payment's; without a payment row (money parked before it was stored)
    it is the one the newest case names, if any.
    """
    async with sessions() as s:
        payment = await s.scalar(
            select(Payment).where(
                Payment.provider == provider, Payment.transaction_id == transaction_id
            )
        )
        cases = list(
            await s.scalars(
                select(ReconciliationCase)
                .where(
                    ReconciliationCase.provider == provider,
                    ReconciliationCase.transaction_id == transaction_id,
                )
                .order_by(ReconciliationCase.id)
            )
        )
        order_id = payment.order_id if payment is not None else None
        if order_id is None:
            order_id = next((c.order_id for c in reversed(cases) if c.order_id), None)
        order = None if order_id is None else await order_view(s, order_id)
        return PaymentDetails(
            payment=None if payment is None else payment_view(payment),
            order=order,
            cases=[case_view(c) for c in cases],
        )


async def close_open_cases(
    s: AsyncSession,
    provider: str,
    transaction_id: str,
    resolution: str,
    kind: str | None = None,
) -> None:
    """Resolves a payment's open cases (of one kind, if given) with `resolution`."""
    query = update(ReconciliationCase).where(
        ReconciliationCase.provider == provider,
        ReconciliationCase.transaction_id == transaction_id,
        ReconciliationCase.state == CaseState.OPEN,
    )
    if kind is not None:
        query = query.where(ReconciliationCase.kind == kind)
    await s.execute(
        query.values(state=CaseState.RESOLVED, resolution=resolution, resolved_at=func.now())
    )
