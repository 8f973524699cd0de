"""`GET /vendor/stream` (WebSocket): a vendor's orders, live (CONTRACT, SEQ-BP-002 step 16).

Authenticated by `Authorization: Bearer` on the upgrade or, from a browser, by the first
message `{"type": "auth", "token": ...}` within 5 s; a connection without a valid token is
closed with 4401, one whose token is not a vendor's with 4403. Then the vendor gets
`{"type": "new_order" | "order_updated", "cursor", "order"}` for its own orders only, from
this process's follower of the event feed (`api.vendor_feed`). `?after=<cursor>` first
replays what the vendor missed since that cursor; every message's `cursor` is one to resume
from.

Close codes of our own besides those: 4400 a malformed `after`, 4408 a client that does not
read (a send blocked PAYSAGA_VENDOR_STREAM_SEND_TIMEOUT seconds: dropped, never buffered
without end), 4429 the vendor has PAYSAGA_VENDOR_STREAM_CONNECTIONS connections on this
process already, 1013 the stream is not ready (the database unreachable since start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from api.auth import Role, bearer, verify_token
from api.vendor_feed import (
    STREAM_MESSAGES,
    STREAM_TROUBLE,
    Message,
    NotReady,
    Subscriber,
    TooMany,
    VendorFeed,
    messages,
)
from db.events import BadCursor, Cursor, parse_cursor
from db.vendor_feed import vendor_events

router = APIRouter()

AUTH_SECONDS = 5.0
REPLAY_PAGE = 100
UNAUTHENTICATED, NOT_A_VENDOR, BAD_CURSOR, NOT_READING, OVER_CAP = 4401, 4403, 4400, 4408, 4429
NOT_READY = 1013  # "try again later"


class NotReading(Exception):
    """A send did not complete in time: the client has stopped reading."""


@router.websocket("/vendor/stream")
async def vendor_stream(ws: WebSocket) -> None:
    await ws.accept()
    claims = await _claims(ws)
    if claims is None:
        await _close(ws, UNAUTHENTICATED, "a vendor's bearer token is required")
        return
    if claims.get("role") != Role.VENDOR:
        await _close(ws, NOT_A_VENDOR, "not a vendor's token")
        return
    feed: VendorFeed = ws.app.state.vendor_feed
    try:
        async with feed.sessions() as s:
            after = await parse_cursor(s, ws.query_params.get("after"))
        subscriber = feed.subscribe(claims["sub"])
    except BadCursor as exc:
        await _close(ws, BAD_CURSOR, str(exc))
        return
    except TooMany:
        await _close(ws, OVER_CAP, "too many connections for this vendor")
        return
    except NotReady:
        await _close(ws, NOT_READY, "the stream is starting: try again")
        return
    try:
        await _serve(ws, feed, subscriber, after if "after" in ws.query_params else None, claims)
    finally:
        feed.unsubscribe(subscriber)


async def _claims(ws: WebSocket) -> dict[str, Any] | None:
    """The token's claims, from the upgrade's header or the first message; None if neither
    carries a valid one in time."""
    secret = ws.app.state.deps.settings.jwt_secret
    header = ws.headers.get("authorization")
    if header is not None:
        token = bearer(header)
        return None if token is None else verify_token(secret, token)
    try:
        first = await asyncio.wait_for(ws.receive_text(), AUTH_SECONDS)
        message = json.loads(first)
    except (TimeoutError, WebSocketDisconnect, ValueError, KeyError, RuntimeError):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return verify_token(secret, token) if isinstance(token, str) and token else None


async def _serve(
    ws: WebSocket,
    feed: VendorFeed,
    subscriber: Subscriber,
    after: Cursor | None,
    claims: dict[str, Any],
) -> None:
    """Sends until the client leaves, stops reading, or its token expires."""
    sending = asyncio.create_task(_send_all(ws, feed, subscriber, after))
    listening = asyncio.create_task(_until_disconnect(ws))
    expires = float(claims["exp"])
    try:
        done, _ = await asyncio.wait(
            {sending, listening},
            timeout=max(0.0, expires - time.time()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if sending in done and isinstance(sending.exception(), NotReading):
            await _drop(ws, subscriber, listening, expires)
        elif sending in done and (error := sending.exception()) is not None:
            raise error
        elif not done:
            await _close(ws, UNAUTHENTICATED, "token expired")
    finally:
        for task in (sending, listening):
            task.cancel()
        await asyncio.gather(sending, listening, return_exceptions=True)


async def _drop(
    ws: WebSocket, subscriber: Subscriber, listening: asyncio.Task[None], expires: float
) -> None:
    """A client that stopped reading: no more messages for it and its buffer freed at once.
    Its close frame waits behind what the socket holds already (the server cannot abort the
    socket through ASGI), so until the client goes, its connection keeps its place under the
    vendor's cap: a client that never reads cannot pile up socket after socket."""
    STREAM_TROUBLE.labels("not_reading").inc()
    subscriber.drop()
    await _close(ws, NOT_READING, "not reading")
    await asyncio.wait({listening}, timeout=max(0.0, expires - time.time()))


async def _until_disconnect(ws: WebSocket) -> None:
    """Reads (and ignores) what the client sends, to see it leave."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


async def _send_all(
    ws: WebSocket, feed: VendorFeed, subscriber: Subscriber, after: Cursor | None
) -> None:
    """The replay after `after`, then the follower's messages; after the buffer filled up,
    a catch-up from the feed. Nothing at or before the last cursor sent is sent again."""
    last = subscriber.since if after is None else after
    if after is not None:
        last = await _catch_up(ws, feed, subscriber, last)
    while True:
        await subscriber.ready.wait()
        if subscriber.behind:
            subscriber.behind = False
            last = await _catch_up(ws, feed, subscriber, last)
            continue
        if not subscriber.pending:
            subscriber.ready.clear()
            continue
        message = subscriber.pending.popleft()
        if (message.cursor.txid, message.cursor.event_id) > (last.txid, last.event_id):
            await _send(ws, feed, message)
            last = message.cursor


async def _catch_up(
    ws: WebSocket, feed: VendorFeed, subscriber: Subscriber, last: Cursor
) -> Cursor:
    """The vendor's messages past `last` read from the feed, a page at a time (the database
    connection is given back before each page is sent)."""
    while True:
        async with feed.sessions() as s:
            found = await vendor_events(s, subscriber.vendor, last, REPLAY_PAGE)
            page = await messages(s, found)
        for message in page:
            await _send(ws, feed, message)
        if found:
            last = found[-1].cursor
        if len(found) < REPLAY_PAGE:
            return last


async def _send(ws: WebSocket, feed: VendorFeed, message: Message) -> None:
    try:
        await asyncio.wait_for(ws.send_text(message.text), feed.config.send_timeout)
    except TimeoutError as exc:
        raise NotReading from exc
    STREAM_MESSAGES.labels(message.kind).inc()


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        # Bounded: closing a socket whose client does not read waits for room to write.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code, reason), 1.0)
