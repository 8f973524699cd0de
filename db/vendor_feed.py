"""The part of the event feed a vendor's live stream shows (`api.vendor_stream`): where the
feed ends now, the stream's events of one vendor after a cursor (a replay), the vendor of
each order, and the wake-up the feed's writers send.

The stream reads the feed in the order `GET /events` gives (`db.events`: by (txid, id), only
transactions older than every open one), so a cursor it hands out is a feed cursor and never
skips an event. Migration 0011 makes every insert of one of `STREAM_EVENTS` into `events`
send `NOTIFY paysaga_events, '<txid>.<id>'` (delivered when the transaction commits): the
event's own cursor, so a follower knows how far it must read to have seen it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.events import Cursor, Item, as_items

CHANNEL = "paysaga_events"
# The events a vendor is told about (CONTRACT `GET /vendor/stream`): the order placed once
# paid, then accepted, rejected, refunded. Migration 0011's trigger notifies these only.
STREAM_EVENTS = ("OrderPlaced", "VendorAccepted", "VendorRejected", "PaymentRefunded")

TAIL = text(
    """
    SELECT txid::text AS txid, id FROM events
    WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid DESC, id DESC
    LIMIT 1
    """
)
OF_VENDOR = text(
    """
    SELECT e.id, e.type, e.order_id, e.payload, e.created_at, e.txid::text AS txid,
           e.dedupe_key
    FROM events e JOIN orders o ON o.id = e.order_id
    WHERE (e.txid, e.id) > (CAST(:txid AS xid8), :event_id)
      AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
      AND e.type = ANY(:types)
      AND o.vendor = :vendor
    ORDER BY e.txid, e.id
    LIMIT :limit
    """
)
VENDORS = text("SELECT id, vendor FROM orders WHERE id = ANY(:ids) AND vendor IS NOT NULL")


async def tail(s: AsyncSession) -> Cursor:
    """The cursor just past the last event a reader of the feed can see now."""
    row = (await s.execute(TAIL)).first()
    return Cursor(0, 0) if row is None else Cursor(int(row.txid), row.id)


async def vendor_events(s: AsyncSession, vendor: str, after: Cursor, limit: int) -> list[Item]:
    """The stream's events of `vendor`'s orders past `after`, in feed order (a replay)."""
    params = {
        "txid": after.txid,
        "event_id": after.event_id,
        "types": list(STREAM_EVENTS),
        "vendor": vendor,
        "limit": limit,
    }
    return as_items((await s.execute(OF_VENDOR, params)).all())


async def vendors_of(s: AsyncSession, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each order's vendor, for the orders that have one."""
    ids = list(set(order_ids))
    if not ids:
        return {}
    return {row.id: row.vendor for row in await s.execute(VENDORS, {"ids": ids})}


def notified(payload: str) -> Cursor | None:
    """The cursor a NOTIFY on `CHANNEL` carries (`<txid>.<id>`), None if it is not one."""
    txid, _, event_id = payload.partition(".")
    if not (txid.isdigit() and event_id.isdigit()):
        return None
    return Cursor(int(txid), int(event_id))
