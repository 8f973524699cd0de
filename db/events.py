"""Reading the event log in an order no late commit can break (`GET /events`).

Event ids come from a sequence, taken when a row is inserted, not when its transaction
commits: a reader that pages by id alone can pass id 105 while 103 is still uncommitted, and
never see 103. So each event also records its writing transaction (`txid`, `xid8`), the feed is
ordered by (txid, id), and it shows only events of transactions older than every transaction
still open (`pg_snapshot_xmin`). Those have all ended, so nothing can appear behind a cursor.
The price: an event waits to be shown while any transaction older than its own is open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.views import EventPage, EventView

_CURSOR = re.compile(r"(\d{1,20})\.(\d{1,19})")


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    txid: int
    event_id: int

    def __str__(self) -> str:
        return f"{self.txid}.{self.event_id}"


START = Cursor(0, 0)

PAGE = text(
    """
    SELECT id, type, order_id, payload, created_at, txid::text AS txid, dedupe_key FROM events
    WHERE (txid, id) > (CAST(:txid AS xid8), :event_id)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid, id
    LIMIT :limit
    """
)
TXID_OF = text("SELECT txid::text FROM events WHERE id = :event_id")


async def parse_cursor(s: AsyncSession, after: str | None) -> Cursor:
    """`next` from an earlier page (`<txid>.<id>`), nothing or `0` for the start, or a plain
    event id (a consumer that kept the last id it processed)."""
    if after is None or after in ("", "0"):
        return START
    if (match := _CURSOR.fullmatch(after)) and int(match[1]) < 2**64 and int(match[2]) < 2**63:
        return Cursor(int(match[1]), int(match[2]))
    if after.isascii() and after.isdigit() and int(after) < 2**63:
        txid = await s.scalar(TXID_OF, {"event_id": int(after)})
        if txid is None:
            raise BadCursor(f"no event {after}")
        return Cursor(int(txid), int(after))
    raise BadCursor("after must be a cursor from `next` (or an event id)")


@dataclass(frozen=True)
class Item:
    view: EventView  # as `GET /events` shows it
    cursor: Cursor  # the position just past it
    dedupe_key: str  # its natural key: stable, unlike its id, across a restore

    @property
    def event(self) -> dict[str, Any]:
        """The event as JSON (ids as strings), for the feed's readers that take it so."""
        return self.view.model_dump(mode="json")


async def read(s: AsyncSession, after: Cursor, limit: int) -> list[Item]:
    rows = (
        await s.execute(PAGE, {"txid": after.txid, "event_id": after.event_id, "limit": limit})
    ).all()
    return as_items(rows)


def as_items(rows: Sequence[Row[Any]]) -> list[Item]:
    """Rows of `events` (id, type, order_id, payload, created_at, txid as text, dedupe_key)."""
    return [
        Item(
            EventView(
                id=row.id,
                type=row.type,
                order_id=row.order_id,
                data=row.payload,
                occurred_at=row.created_at,
            ),
            Cursor(int(row.txid), row.id),
            row.dedupe_key,
        )
        for row in rows
    ]


async def page(s: AsyncSession, after: Cursor, limit: int) -> EventPage:
    """Events past `after`; `next` is where the next page starts (where it was, if empty)."""
    found = await read(s, after, limit)
    last = found[-1].cursor if found else after
    return EventPage(events=[item.view for item in found], next=str(last))
