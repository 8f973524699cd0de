"""UC-35 steps 5, 6 and 8 in the transaction that takes them: the order marked paid, its
audit entries and its ticket's code, each of 6 and 8 in a savepoint of its own so that
neither can hold 5 back or roll it back (`activities.confirmation`)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from activities.confirmation_inputs import MarkedPaid, Validation
from db import journal
from db.orders import NotPayable, mark_paid
from db.session import in_savepoint
from db.tickets import issue_code
from domain.confirmation import AuditRecord, confirmation_records
from domain.payments import Confirmation


async def write_trail(s: AsyncSession, records: list[AuditRecord]) -> bool:
    """Step 6's entries in the transaction (True: written, for `in_savepoint`)."""
    await journal.write_audit(s, records)
    return True


async def paid_at_once(s: AsyncSession, c: Confirmation, v: Validation) -> MarkedPaid | None:
    """Steps 5, 6 and 8 in the transaction that stored the payment; None when the order can
    no longer be paid (`mark_paid` then wrote nothing)."""
    assert v.order_id is not None
    order_id = uuid.UUID(v.order_id)
    try:
        changed = await mark_paid(s, order_id, c.provider, c.transaction_id)
    except NotPayable:
        return None
    records = list(confirmation_records(c, v.order_id))
    audited = await in_savepoint(s, "audit", lambda: write_trail(s, records))
    ticket = None
    if v.accept_seconds is None:  # an order that waits for its vendor: once accepted
        ticket = await in_savepoint(s, "ticket", lambda: issue_code(s, order_id))
    return MarkedPaid(changed, audited is not None, ticket)
