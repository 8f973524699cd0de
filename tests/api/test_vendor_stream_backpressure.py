"""A vendor's stream connection is bounded (issue 28): a client that stops reading is
dropped, never buffered without end, and does not hold back the vendor's other connections,
which catch up from the feed when a burst overflows their buffer.

No worker here: the vendor's order and a burst of its events are written straight into the
tables, as fast as PostgreSQL takes them, with an order large enough (40 lines) that the
burst outgrows every buffer between the server and a client that never reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.vendor_feed import Message, Subscriber, VendorFeed
from db.events import Cursor
from observability.metrics import API
from tests.support.stack import settings_for
from tests.support.vendor_stream import serving, stream, vendor_token

BURST = 1500  # events of one order: ~6 KB each, some 9 MB in all
LINES = 40


def test_a_full_buffer_marks_the_connection_behind_and_holds_nothing() -> None:
    subscriber = Subscriber("acme", Cursor(0, 0), limit=8)
    for n in range(1, 21):
        subscriber.offer(Message(Cursor(1, n), "order_updated", "{}"))
    assert subscriber.behind and not subscriber.pending  # it catches up from the feed
    subscriber.behind = False
    subscriber.offer(Message(Cursor(1, 21), "order_updated", "{}"))
    subscriber.drop()
    subscriber.offer(Message(Cursor(1, 22), "order_updated", "{}"))
    assert subscriber.dropped and not subscriber.pending


@pytest.fixture
async def live(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, FastAPI]]:
    settings = settings_for(
        database_url,
        "unused",
        PAYSAGA_VENDOR_STREAM_BUFFER="8",
        PAYSAGA_VENDOR_STREAM_SEND_TIMEOUT="1",
    )
    app = create_app(settings)
    async with serving(app) as url:
        yield url, app


async def big_vendor_order(sessions: async_sessionmaker[AsyncSession], vendor: str) -> uuid.UUID:
    order_id = uuid.uuid4()
    async with sessions.begin() as s:
        await s.execute(
            text(
                "INSERT INTO orders (id, customer_id, status, amount, currency, expires_at, "
                "paid_at, vendor, fulfilment) VALUES (:id, 'alice', 'paid', :amount, 'EUR', "
                "now(), now(), :vendor, 'accepted')"
            ),
            {"id": order_id, "amount": 100 * LINES, "vendor": vendor},
        )
        await s.execute(
            text(
                "INSERT INTO order_items (order_id, sku, name, quantity, unit_amount) "
                "SELECT :id, 'SKU-' || g, repeat('A long product name ', 5) || g, 1, 100 "
                "FROM generate_series(1, :lines) g"
            ),
            {"id": order_id, "lines": LINES},
        )
    return order_id


async def burst(sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> None:
    async with sessions.begin() as s:
        await s.execute(
            text(
                "INSERT INTO events (type, order_id, payload, dedupe_key) "
                "SELECT 'VendorAccepted', :id, '{}'::jsonb, 'burst:' || :key || ':' || g "
                "FROM generate_series(1, :n) g"
            ),
            {"id": order_id, "key": str(order_id), "n": BURST},
        )


async def never_reading(url: str, token: str) -> socket.socket:
    """A client that upgrades to the stream, with a tiny receive window, and then never
    reads another byte."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = url.removeprefix("http://").split(":")
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET /api/v1/vendor/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode(),
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def trouble(kind: str) -> float:
    return API.get_sample_value("paysaga_vendor_stream_trouble_total", {"kind": kind}) or 0


async def until(condition: str, check: object, seconds: float = 30) -> None:
    assert callable(check)
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {condition}")


async def test_a_client_that_does_not_read_is_dropped_and_the_others_get_everything(
    live: tuple[str, FastAPI], sessions: async_sessionmaker[AsyncSession]
) -> None:
    url, app = live
    feed: VendorFeed = app.state.vendor_feed
    order_id = await big_vendor_order(sessions, "acme")
    drops, behind = trouble("not_reading"), trouble("behind")
    stuck = await never_reading(url, vendor_token("acme"))
    try:
        async with stream(url, vendor_token("acme")) as reader:
            await until("two connections", lambda: feed.connections("acme") == 2)
            await burst(sessions, order_id)
            cursors = []
            for _ in range(BURST):
                message = await reader.message(within=30)
                assert (message["type"], message["order"]["id"]) == ("order_updated", str(order_id))
                assert len(message["order"]["items"]) == LINES
                cursors.append(tuple(map(int, message["cursor"].split("."))))
            assert cursors == sorted(set(cursors))  # every one, once, in feed order
            await reader.nothing_for(0.3)
            assert trouble("behind") > behind  # the burst overflowed a buffer: caught up
            # The one that does not read: dropped, its buffer freed; not the reader.
            await until("the non-reader dropped", lambda: trouble("not_reading") == drops + 1)
            dropped = [s for s in feed.subscribers("acme") if s.dropped]
            assert len(dropped) == 1 and not dropped[0].pending
            # Until it goes it keeps its place under the vendor's cap.
            assert feed.connections("acme") == 2
            stuck.close()
            await until("its place freed", lambda: feed.connections("acme") == 1)
    finally:
        stuck.close()
    await until("no connection left", lambda: feed.connections("acme") == 0)
