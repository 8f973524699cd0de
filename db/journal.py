"""The two insert-once journals: the event log (an outbox, written in the same transaction
as the change it reports) and the audit trail. Both are keyed by natural dedupe keys
(`domain.keys`), so whoever writes a fact, and however often, it is written once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry, Event
from domain import keys
from domain.confirmation import AuditRecord
from domain.views import AuditEntryView


def as_uuid(value: str | uuid.UUID | None) -> uuid.UUID | None:
    """An order reference as the tables keep it; None for anything that is not a UUID."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def emit(
    s: AsyncSession,
    type_: str,
    order_id: str | uuid.UUID | None,
    dedupe_key: str,
    payload: dict[str, Any],
) -> None:
    await s.execute(
        insert(Event)
        .values(type=type_, order_id=as_uuid(order_id), payload=payload, dedupe_key=dedupe_key)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )


async def payment_refunded(
    s: AsyncSession,
    order_id: str | uuid.UUID | None,
    provider: str,
    transaction_id: str,
    amount: int,
    currency: str,
    detail: dict[str, Any],
) -> None:
    """`PaymentRefunded`, once per payment, whoever records it (an admin's decision, the
    gateway's refund): the same key, so the first one written stands."""
    await emit(
        s,
        "PaymentRefunded",
        order_id,
        keys.event("PaymentRefunded", provider, transaction_id),
        {
            "provider": provider,
            "transaction_id": transaction_id,
            "amount": amount,
            "currency": currency,
            **detail,
        },
    )


async def write_audit(s: AsyncSession, records: Iterable[AuditRecord]) -> None:
    for r in records:
        await s.execute(
            insert(AuditEntry)
            .values(
                order_id=as_uuid(r.order_id),
                actor=r.actor,
                action=r.action,
                detail=r.detail,
                dedupe_key=r.dedupe_key,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )


async def audit_trail(s: AsyncSession, order_id: uuid.UUID) -> list[AuditEntryView]:
    """An order's audit trail, oldest first."""
    rows = await s.scalars(
        select(AuditEntry).where(AuditEntry.order_id == order_id).order_by(AuditEntry.id)
    )
    return [
        AuditEntryView(
            id=r.id, actor=r.actor, action=r.action, detail=r.detail, created_at=r.created_at
        )
        for r in rows
    ]
