"""Reconciliation cases as operators read them (the API and `paysaga admin cases`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import ReconciliationCase


def case_view(c: ReconciliationCase) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "provider": c.provider,
        "transaction_id": c.transaction_id,
        "order_id": str(c.order_id) if c.order_id else None,
        "amount": c.amount,
        "currency": c.currency,
        "opened_at": c.opened_at.isoformat(),
        "state": c.state,
        "reason": c.detail.get("reason"),
        "resolution": c.resolution,
        "resolved_at": c.resolved_at.isoformat() if c.resolved_at else None,
    }


async def list_cases(
    sessions: async_sessionmaker[AsyncSession],
    *,
    include_resolved: bool = False,
    after: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Oldest first, by id; a page is the cases with ids past `after`."""
    query = (
        select(ReconciliationCase)
        .where(ReconciliationCase.id > after)
        .order_by(ReconciliationCase.id)
        .limit(limit)
    )
    if not include_resolved:
        query = query.where(ReconciliationCase.state == "open")
    async with sessions() as s:
        return [case_view(c) for c in await s.scalars(query)]
