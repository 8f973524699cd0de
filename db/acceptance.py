"""The vendor's acceptance window a payment opens (SEQ-BP-002's "Pending Vendor Acceptance").

Part of `db.orders.mark_paid`: an order placed with an acceptance window (`accept_seconds`,
set at checkout from PAYSAGA_VENDOR_ACCEPT_SECONDS) becomes `pending_vendor_acceptance` in the
same conditional update that makes it paid, so an ordinary order pays for vendors with no
statement more. The decisions that end the window are `db.fulfilment`; this module imports
nothing that imports `db.orders`, which imports it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order
from domain import keys
from domain.confirmation import AuditRecord
from domain.statuses import FulfilmentStatus

PENDING = FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE


def acceptance_on_payment() -> dict[str, Any]:
    """What `mark_paid`'s update sets beside the status: pending until now plus the order's
    window, for an order placed with one; for any other order both stay NULL."""
    return {
        "fulfilment": case((Order.accept_seconds.is_not(None), literal(PENDING.value)), else_=None),
        # NULL seconds make a NULL interval, so a NULL deadline.
        "accept_by": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, Order.accept_seconds),
    }


async def acceptance_opened(s: AsyncSession, order_id: uuid.UUID, accept_by: datetime) -> None:
    """The audit entry of the order's move to `pending_vendor_acceptance` (once: its key)."""
    await journal.write_audit(
        s,
        [
            AuditRecord(
                str(order_id),
                "paysaga",
                "order.fulfilment_changed",
                keys.fulfilment_changed(str(order_id), PENDING),
                {"from": None, "to": PENDING, "accept_by": accept_by.isoformat()},
            )
        ],
    )
