"""`paysaga admin check`'s rule for vendors' acceptance (SEQ-BP-002, issue 28), beside
`db.invariants`, which runs it.

`vendor_acceptance`: an order placed with an acceptance window is, once paid, pending within
its window (plus `GRACE`, the keeper's time to close it), accepted, or rejected with its full
refund under way or done (a failed one with its `refund_failed` case open: an admin's now).
An order placed without one has no fulfilment; nothing unpaid has one; every decision has its
event and its audit entry.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain import keys

# The window keeper polls every half second; a round that failed is retried within seconds.
GRACE = timedelta(seconds=60)

VENDOR_ACCEPTANCE = text(
    """
    SELECT o.id, 'pending ' || round(extract(epoch FROM now() - o.accept_by))
        || ' s past its window' FROM orders o
    WHERE o.status = 'paid' AND o.fulfilment = 'pending_vendor_acceptance'
      AND o.accept_by < now() - make_interval(secs => :grace)
    UNION ALL
    SELECT o.id, 'paid, needs acceptance, but has no fulfilment' FROM orders o
    WHERE o.status = 'paid' AND o.accept_seconds IS NOT NULL AND o.fulfilment IS NULL
    UNION ALL
    SELECT o.id, 'has a fulfilment (' || o.fulfilment || ') but '
        || CASE WHEN o.paid_at IS NULL THEN 'was never paid' ELSE 'needs no acceptance' END
    FROM orders o
    WHERE o.fulfilment IS NOT NULL AND (o.paid_at IS NULL OR o.accept_seconds IS NULL)
    UNION ALL
    SELECT o.id, 'rejected, paid, and no refund under way or done' FROM orders o
    WHERE o.status = 'paid' AND o.fulfilment = 'rejected' AND NOT EXISTS (
        SELECT 1 FROM refunds r WHERE r.order_id = o.id AND (
            r.status IN ('pending', 'succeeded')
            OR (r.status = 'failed' AND EXISTS (
                SELECT 1 FROM reconciliation_cases c
                WHERE c.provider = r.provider AND c.transaction_id = r.transaction_id
                  AND c.kind = 'refund_failed' AND c.state = 'open'))))
    UNION ALL
    SELECT o.id, o.fulfilment || ' without its ' || d.event || ' event or audit entry'
    FROM orders o
    JOIN (VALUES ('accepted', 'VendorAccepted'), ('rejected', 'VendorRejected')) d(f, event)
      ON d.f = o.fulfilment
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = d.event)
       OR NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.dedupe_key
                      = replace(replace(:key, '{order_id}', o.id::text), '{to}', o.fulfilment))
    """
).bindparams(key=keys.fulfilment_changed("{order_id}", "{to}"))


async def vendor_acceptance(s: AsyncSession) -> list[tuple[str, str]]:
    """(order id, what is wrong) for every order that breaks the rule."""
    rows = await s.execute(VENDOR_ACCEPTANCE, {"grace": GRACE.total_seconds()})
    return [(str(order_id), problem) for order_id, problem in rows]
