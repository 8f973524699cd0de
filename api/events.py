"""`GET /events?after=&limit=`: the event log for consumers, oldest first, never skipping."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import AdminCaller, DepsDep
from api.errors import BadRequest
from db.events import BadCursor, page, parse_cursor
from domain.views import EventPage

router = APIRouter()


@router.get("/events")
async def read_events(
    _: AdminCaller,
    deps: DepsDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """Pass `next` back as `after` to go on; an empty page keeps `next` where it was. Ids
    are stable: a consumer that sees one twice (after a crash) de-duplicates by id."""
    async with deps.sessions() as s:
        try:
            cursor = await parse_cursor(s, after)
        except BadCursor as exc:
            raise BadRequest(str(exc)) from exc
        return await page(s, cursor, limit)
