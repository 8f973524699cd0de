"""One follower of the event feed per API process, fanning the vendors' events out to the
live streams (`api.vendor_stream`) connected to this process.

Fed by the event feed, not an in-process bus, so a vendor connected to any API process gets
every one of its orders, whichever process or worker wrote them. The follower reads the feed
as `GET /events` does (`db.events`: (txid, id) order, nothing skipped) from where it stood
when the process started; it is woken by `LISTEN paysaga_events` (migration 0011's trigger
notifies each stream event with its own cursor, so the follower reads until it has passed
it: an event whose transaction committed while an older one was still open shows a moment
later, and is read again for after a short backoff). Without a listener connection it polls.
Measured (issue 28's note): NOTIFY wakes within a few milliseconds and costs nothing idle;
polling adds half its period to every message and a query per period per process.

Each connection has a bounded buffer (`Subscriber`): the follower never waits for a client.
A connection whose buffer is full is marked behind and its buffer emptied; it then catches up
from the feed itself (`db.vendor_feed.vendor_events`) at its own pace. Only a client that
does not read at all is dropped, by its send timing out (`api.vendor_stream`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import events as feed
from db.events import Cursor, Item
from db.order_view import order_view
from db.vendor_feed import CHANNEL, STREAM_EVENTS, notified, tail, vendors_of
from observability.metrics import API
from paysaga.settings import SettingsError

log = logging.getLogger("paysaga.vendor_stream")

PAGE = 500  # events per read of the feed
SAFETY_READ = 10.0  # seconds: read even without a NOTIFY (a listener that died silently)
RECONNECT = 5.0  # seconds between attempts to open the listener connection again
ERROR_PAUSE = 1.0  # seconds after a failed read (the database down) before the next

NEW_ORDER, ORDER_UPDATED = "new_order", "order_updated"

STREAM_CONNECTIONS = Gauge(
    "paysaga_vendor_stream_connections",
    "Vendors' live stream connections open on this API process.",
    registry=API,
)
STREAM_MESSAGES = Counter(
    "paysaga_vendor_stream_messages",
    "Messages sent on the vendors' live streams, by type.",
    ["type"],
    registry=API,
)
STREAM_TROUBLE = Counter(
    "paysaga_vendor_stream_trouble",
    "Live stream connections held back: behind (buffer full, caught up from the feed), "
    "not_reading (dropped: a send timed out), over_cap (refused: the vendor's cap).",
    ["kind"],
    registry=API,
)


def _ordered(c: Cursor) -> tuple[int, int]:
    return (c.txid, c.event_id)


@dataclass(frozen=True)
class StreamConfig:
    """PAYSAGA_VENDOR_STREAM_*: how the follower wakes and what one connection may hold."""

    wake: Literal["notify", "poll"] = "notify"
    poll_seconds: float = 0.25  # the polling period (and the fallback without a listener)
    connections_per_vendor: int = 10  # per API process
    buffer: int = 64  # messages held for one connection before it is marked behind
    send_timeout: float = 10.0  # a send blocked this long: the client is not reading

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StreamConfig:
        def number(name: str, default: float, low: float) -> float:
            raw = env.get(f"PAYSAGA_VENDOR_STREAM_{name}")
            try:
                value = default if raw is None else float(raw)
            except ValueError:
                value = low - 1
            if value < low:
                raise SettingsError(f"PAYSAGA_VENDOR_STREAM_{name}: a number, at least {low:g}")
            return value

        wake = env.get("PAYSAGA_VENDOR_STREAM_WAKE", "notify")
        if wake not in ("notify", "poll"):
            raise SettingsError("PAYSAGA_VENDOR_STREAM_WAKE: notify or poll")
        return cls(
            wake="poll" if wake == "poll" else "notify",
            poll_seconds=number("POLL_SECONDS", cls.poll_seconds, 0.01),
            connections_per_vendor=int(number("CONNECTIONS", cls.connections_per_vendor, 1)),
            buffer=int(number("BUFFER", cls.buffer, 1)),
            send_timeout=number("SEND_TIMEOUT", cls.send_timeout, 0.1),
        )


@dataclass(frozen=True)
class Message:
    cursor: Cursor
    kind: str
    text: str  # the JSON sent


async def messages(s: AsyncSession, items: Sequence[Item]) -> list[Message]:
    """The stream's message for each event of a vendor's order, with the order as it is now
    (each order read once however many of its events there are)."""
    orders: dict[uuid.UUID, str | None] = {}
    found = []
    for item in items:
        order_id = item.view.order_id
        if order_id is None or item.view.type not in STREAM_EVENTS:
            continue
        if order_id not in orders:
            view = await order_view(s, order_id)
            orders[order_id] = None if view is None else view.model_dump_json()
        if (order := orders[order_id]) is not None:
            kind = NEW_ORDER if item.view.type == "OrderPlaced" else ORDER_UPDATED
            text = f'{{"type":"{kind}","cursor":"{item.cursor}","order":{order}}}'
            found.append(Message(item.cursor, kind, text))
    return found


@dataclass(eq=False)
class Subscriber:
    """One connection's buffer: at most `limit` messages; past it, marked behind and emptied."""

    vendor: str
    since: Cursor  # where the follower stood when it joined: what it has been given is past it
    limit: int
    pending: deque[Message] = field(default_factory=deque)
    behind: bool = False
    dropped: bool = False  # not reading: given nothing more
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: Message) -> None:
        if self.behind or self.dropped:
            return  # behind: its catch-up reads this one from the feed
        if len(self.pending) >= self.limit:
            self.behind = True
            self.pending.clear()
            STREAM_TROUBLE.labels("behind").inc()
        else:
            self.pending.append(message)
        self.ready.set()

    def drop(self) -> None:
        self.dropped = True
        self.pending.clear()


class TooMany(Exception):
    """The vendor has its cap of connections on this process already."""


class NotReady(Exception):
    """The follower has not found the feed's end yet (the database unreachable at start)."""


class VendorFeed:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], database_url: str, config: StreamConfig
    ) -> None:
        self.sessions = sessions
        self.config = config
        self._dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._cursor: Cursor | None = None  # None until the feed's end is found
        self._target: Cursor | None = None  # the furthest event a NOTIFY named
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._next_listen = 0.0
        self._misses = 0  # reads in a row that did not reach the notified event
        self._task: asyncio.Task[None] | None = None

    # --- the app's lifespan ---------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vendor-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if (listener := self._listener) is not None:
            self._listener = None
            listener.remove_termination_listener(self._on_lost)  # a stop, not a loss
            await listener.close(timeout=2)

    # --- connections ----------------------------------------------------------------------
    def subscribe(self, vendor: str) -> Subscriber:
        if self._cursor is None:
            raise NotReady
        mine = self._subscribers.setdefault(vendor, set())
        if len(mine) >= self.config.connections_per_vendor:
            STREAM_TROUBLE.labels("over_cap").inc()
            raise TooMany
        subscriber = Subscriber(vendor, self._cursor, self.config.buffer)
        mine.add(subscriber)
        STREAM_CONNECTIONS.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        mine = self._subscribers.get(subscriber.vendor, set())
        if subscriber in mine:
            mine.discard(subscriber)
            STREAM_CONNECTIONS.dec()
        if not mine:
            self._subscribers.pop(subscriber.vendor, None)

    def subscribers(self, vendor: str) -> list[Subscriber]:
        return list(self._subscribers.get(vendor, ()))

    def connections(self, vendor: str) -> int:
        return len(self._subscribers.get(vendor, ()))

    # --- following the feed ---------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._cursor is None:
                    await self._listen()  # first: what commits after the end found is notified
                    async with self.sessions() as s:
                        self._cursor = await tail(s)
                self._wake.clear()  # before the read: a NOTIFY during it wakes the next one
                await self._read_to_end()
                await self._sleep()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database down: the streams stay open and catch up once it is back.
                failures += 1
                log.warning("vendor stream: reading the event feed failed (%r); again", exc)
                await asyncio.sleep(min(ERROR_PAUSE * 2 ** min(failures, 4), 10.0))

    async def _read_to_end(self) -> None:
        assert self._cursor is not None
        while True:
            async with self.sessions() as s:
                found = await feed.read(s, self._cursor, PAGE)
                if found:
                    await self._fan_out(s, found)
            if found:
                self._cursor = found[-1].cursor
            if len(found) < PAGE:
                return

    async def _fan_out(self, s: AsyncSession, found: list[Item]) -> None:
        if not self._subscribers:
            return
        wanted = [
            (item, item.view.order_id)
            for item in found
            if item.view.type in STREAM_EVENTS and item.view.order_id is not None
        ]
        vendors = await vendors_of(s, (order_id for _, order_id in wanted))
        local = [
            (item, vendor)
            for item, order_id in wanted
            if (vendor := vendors.get(order_id)) is not None and vendor in self._subscribers
        ]
        built = await messages(s, [item for item, _ in local])
        by_cursor = {message.cursor: message for message in built}
        for item, vendor in local:
            if (message := by_cursor.get(item.cursor)) is not None:
                for subscriber in list(self._subscribers.get(vendor, ())):
                    subscriber.offer(message)

    async def _sleep(self) -> None:
        """Until there is something to read: a NOTIFY, a notified event not visible yet (a
        short backoff), the polling period, or the safety read."""
        if self.config.wake == "notify" and self._listener is None:
            await self._listen()
        if self._listener is not None and self._behind_target():
            # An older transaction still open hides the notified event from the feed: it
            # shows once that one ends, usually within milliseconds.
            await asyncio.sleep(min(0.005 * 2**self._misses, 0.2))
            self._misses += 1
            return
        self._misses = 0
        timeout = SAFETY_READ if self._listener is not None else self.config.poll_seconds
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _behind_target(self) -> bool:
        return (
            self._target is not None
            and self._cursor is not None
            and _ordered(self._cursor) < _ordered(self._target)
        )

    async def _listen(self) -> None:
        if self.config.wake != "notify" or time.monotonic() < self._next_listen:
            return
        self._next_listen = time.monotonic() + RECONNECT
        try:
            conn = await asyncpg.connect(self._dsn, timeout=5)
            await conn.add_listener(CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("vendor stream: no LISTEN connection (%s); polling meanwhile", exc)
            return
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        cursor = notified(str(payload))
        if cursor is not None and (
            self._target is None or _ordered(cursor) > _ordered(self._target)
        ):
            self._target = cursor
        self._wake.set()

    def _on_lost(self, _conn: object) -> None:
        log.warning("vendor stream: LISTEN connection lost; polling until it is back")
        self._listener = None
        self._wake.set()
