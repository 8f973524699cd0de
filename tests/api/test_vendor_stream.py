"""`GET /vendor/stream` on the real stack (CONTRACT, SEQ-BP-002 step 16): a paid order's
`new_order` reaches its vendor, and only its vendor, within 2 s of the webhook; `after`
replays what a vendor missed; tokens are checked (4401, 4403) and the per-vendor cap holds;
the follower wakes by NOTIFY, polls without it, and comes back when its listener dies.

The API under test is served by uvicorn in this process (its lifespan runs the follower);
webhooks go through the stack's own in-process app, a second API: the event feed, not the
process, carries the order to the vendor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from api.app import create_app
from api.auth import make_token
from api.vendor_feed import NotReady, VendorFeed
from tests.support.signing import SECRETS
from tests.support.stack import Stack
from tests.support.vendor_stream import (
    paid_order,
    serving,
    stream,
    vendor_product,
    vendor_token,
)

WITHIN = 2.0  # SEQ-BP-002: webhook -> new_order


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[tuple[str, FastAPI]]:
    """The API served over real HTTP (the stream needs it): its base URL and app."""
    app = create_app(stack.settings, temporal=stack.client)
    async with serving(app) as url:
        yield url, app


def feed_of(app: FastAPI) -> VendorFeed:
    feed: VendorFeed = app.state.vendor_feed
    return feed


async def connected(app: FastAPI, vendor: str, n: int) -> None:
    """Until `n` of the vendor's connections are following the feed (accepted, not yet
    subscribed, a connection would miss what is placed meanwhile: it did not ask for `after`)."""
    for _ in range(200):
        if feed_of(app).connections(vendor) == n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{vendor}: {feed_of(app).connections(vendor)} connections, not {n}")


def check_new_order(message: dict[str, Any], order: dict[str, Any], vendor: str) -> None:
    assert message["type"] == "new_order"
    assert message["order"]["id"] == order["id"]
    assert message["order"]["vendor"] == vendor
    assert message["order"]["status"] == "paid"
    assert message["order"]["amount"] == order["amount"]
    assert isinstance(message["cursor"], str) and message["cursor"]


async def test_new_order_reaches_its_vendor_within_two_seconds_and_no_other(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    url, app = live
    acme = await vendor_product(stack.http, stack.admin, "acme")
    bolt = await vendor_product(stack.http, stack.admin, "bolt")
    own = await stack.new_product(5)  # the organizer's own: no vendor is told
    async with (
        stream(url, vendor_token("acme")) as by_header,
        stream(url, vendor_token("acme"), first_message=True) as by_message,
        stream(url, vendor_token("bolt")) as other,
    ):
        await connected(app, "acme", 2)
        await connected(app, "bolt", 1)
        order, sent = await paid_order(stack.http, acme)
        for s in (by_header, by_message):
            arrived, message = await s.next()
            check_new_order(message, order, "acme")
            assert arrived - sent < WITHIN, f"new_order {arrived - sent:.2f} s after the webhook"
        await paid_order(stack.http, own)
        await other.nothing_for(1.0)  # acme's order, and the organizer's, are not bolt's
        bolts, _ = await paid_order(stack.http, bolt)
        check_new_order(await other.message(), bolts, "bolt")
        await by_header.nothing_for(0.5)
        await by_message.nothing_for(0.1)


async def test_after_replays_what_the_vendor_missed(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    url, app = live
    sku = await vendor_product(stack.http, stack.admin, "acme")
    async with stream(url, vendor_token("acme")) as s:
        await connected(app, "acme", 1)
        first, _ = await paid_order(stack.http, sku)
        seen = await s.message()
        check_new_order(seen, first, "acme")
    # Disconnected: two more are placed, then the vendor comes back with its last cursor.
    missed = [(await paid_order(stack.http, sku))[0] for _ in range(2)]
    await placed_in_feed(stack, [o["id"] for o in missed])
    async with stream(url, vendor_token("acme"), after=seen["cursor"]) as s:
        replayed = [await s.message(), await s.message()]
        assert [m["order"]["id"] for m in replayed] == [o["id"] for o in missed]
        assert all(m["type"] == "new_order" for m in replayed)
        await connected(app, "acme", 1)
        live_one, _ = await paid_order(stack.http, sku)  # then live, on the same connection
        check_new_order(await s.message(), live_one, "acme")
        await s.nothing_for(0.5)
    cursors = [seen["cursor"], *(m["cursor"] for m in replayed)]
    assert cursors == sorted(cursors, key=lambda c: tuple(map(int, c.split("."))))
    # From its last cursor nothing is replayed; from the start, everything, in order.
    async with stream(url, vendor_token("acme"), after="0") as s:
        ids = [(await s.message())["order"]["id"] for _ in range(4)]
        assert ids == [first["id"], *(o["id"] for o in missed), live_one["id"]]
        await s.nothing_for(0.5)
    async with stream(url, vendor_token("bolt"), after="0") as s:
        await s.nothing_for(0.5)  # another vendor's replay holds none of acme's


async def placed_in_feed(stack: Stack, order_ids: list[str]) -> None:
    """Until each order's `OrderPlaced` is in the event log."""
    query = text("SELECT count(*) FROM events WHERE type = 'OrderPlaced' AND order_id = ANY(:ids)")
    ids = [uuid.UUID(i) for i in order_ids]
    for _ in range(200):
        async with stack.sessions() as s:
            if await s.scalar(query, {"ids": ids}) == len(ids):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("OrderPlaced never written")


async def closed_with(url: str, token: str | None, **kwargs: Any) -> int | None:
    async with stream(url, token, **kwargs) as s:
        return await s.closed(within=10)


async def test_tokens_are_checked(stack: Stack, live: tuple[str, FastAPI]) -> None:
    url, _ = live
    customer = make_token(SECRETS["jwt"], "alice")
    admin = make_token(SECRETS["jwt"], "ops", admin=True)
    expired = vendor_token("acme", ttl=-60)
    assert await closed_with(url, "not-a-token") == 4401
    assert await closed_with(url, expired) == 4401
    assert await closed_with(url, expired, first_message=True) == 4401
    assert await closed_with(url, customer) == 4403
    assert await closed_with(url, customer, first_message=True) == 4403
    assert await closed_with(url, admin) == 4403
    assert await closed_with(url, vendor_token("acme"), after="bogus") == 4400
    async with stream(url, None) as s:  # a browser that never says who it is: 5 s
        await s.ws.send('{"type": "hello"}')
        assert await s.closed(within=2) == 4401
    async with stream(url, None) as s:
        assert await s.closed(within=7) == 4401


async def test_a_connection_ends_when_its_token_expires(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    url, app = live
    async with stream(url, vendor_token("acme", ttl=2)) as s:
        await connected(app, "acme", 1)
        assert await s.closed(within=5) == 4401
    await connected(app, "acme", 0)


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_VENDOR_STREAM_CONNECTIONS": "2"}])
async def test_a_vendor_has_at_most_its_cap_of_connections(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    url, app = live
    token = vendor_token("acme")
    async with stream(url, token), stream(url, token, first_message=True):
        await connected(app, "acme", 2)
        assert await closed_with(url, token) == 4429
        async with stream(url, vendor_token("bolt")):  # the cap is per vendor
            await connected(app, "bolt", 1)
    await connected(app, "acme", 0)
    async with stream(url, token):  # room again once they left
        await connected(app, "acme", 1)


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_VENDOR_STREAM_WAKE": "poll"}])
async def test_polling_also_delivers_within_two_seconds(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    url, app = live
    sku = await vendor_product(stack.http, stack.admin, "acme")
    async with stream(url, vendor_token("acme")) as s:
        await connected(app, "acme", 1)
        order, sent = await paid_order(stack.http, sku)
        arrived, message = await s.next()
        check_new_order(message, order, "acme")
        assert arrived - sent < WITHIN


async def test_the_follower_survives_losing_its_listener(
    stack: Stack, live: tuple[str, FastAPI]
) -> None:
    """The LISTEN connection killed: it polls meanwhile, then listens again."""
    url, app = live
    sku = await vendor_product(stack.http, stack.admin, "acme")
    async with stream(url, vendor_token("acme")) as s:
        await connected(app, "acme", 1)
        assert await listeners(stack) == 1
        async with stack.sessions.begin() as db:
            await db.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %paysaga_events%' AND datname = current_database()"
                )
            )
        order, sent = await paid_order(stack.http, sku)
        arrived, message = await s.next()
        check_new_order(message, order, "acme")
        assert arrived - sent < WITHIN
        await listening(stack, 1, within=10)  # again, after its reconnect delay


async def listening(stack: Stack, n: int, within: float = 2) -> None:
    for _ in range(int(within / 0.1)):
        if await listeners(stack) == n:
            return
        await asyncio.sleep(0.1)
    assert await listeners(stack) == n


async def listeners(stack: Stack) -> int:
    async with stack.sessions() as s:
        found = await s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %paysaga_events%' AND state = 'idle' "
                "AND datname = current_database()"
            )
        )
    return int(found or 0)


async def test_the_follower_starts_and_stops_with_the_app(stack: Stack) -> None:
    """Started by the app's lifespan, stopped by it: open streams are told the server is
    going away (1012), and the follower's LISTEN connection is closed."""
    app = create_app(stack.settings, temporal=stack.client)
    feed = feed_of(app)
    with pytest.raises(NotReady):  # not before the app starts
        feed.subscribe("acme")
    async with AsyncExitStack() as outlives_the_server:
        async with serving(app) as url:
            assert await listeners(stack) == 1
            s = await outlives_the_server.enter_async_context(stream(url, vendor_token("acme")))
            await connected(app, "acme", 1)
        assert await s.closed(within=5) == 1012
    await listening(stack, 0)
    assert feed.connections("acme") == 0
