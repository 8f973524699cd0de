"""The window keeper's round: every deadline the database holds, closed once it has passed.

A window is a deadline written on its row when it opens (an order's `expires_at`, committed
with the order), so it is as durable as the order itself, and no second system has to be told
that it exists. One round of `workflows.window_keeper` (this activity, heartbeating) polls
each window for what is due and closes it; the server retries a round that fails (the
database gone) and moves it to another worker when this one dies (heartbeat timeout), so a
deadline is kept within a poll of its time while any worker runs.

Who wins a race between a deadline and what it waits for (a confirmation, a cancel) is not
decided here but by one conditional update of the row (`db.orders.close_order` against
`db.orders.mark_paid`), as it was when a workflow per order held the window: a close that
loses changes nothing, and one retried after a crash finds the order closed.

This replaced the per-order workflow `order-{id}` (issue 24): that workflow's start, signal
and completion were a third of the server's work per paid order. Other windows (a vendor's
time to accept, issue 28) are another `Window` in the same round.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.models import Order, Payment
from db.orders import close_order
from domain.statuses import CancelReason, OrderStatus, PaymentStatus

log = logging.getLogger("paysaga.windows")

# An order's look-up at its gateway before its window closes, as `OrderActivities`' does it.
LookUp = Callable[[str], Awaitable[str]]
LOOK_UP_SECONDS = 90.0  # the gateway's call plus up to a minute for the confirmation it starts
DRAIN_HEARTBEAT_SECONDS = 2.0  # well within the round's heartbeat timeout (10 s)


class Window(Protocol):
    """A kind of deadline. `close_due` starts closing what is due and returns at once; a
    close runs beside the poll (a gateway look-up may take seconds) and must be idempotent.
    `drain` waits for the closes in flight at the round's end, or cancels them when the round
    itself is cancelled (each close is idempotent: the next round redoes it)."""

    name: str

    async def close_due(self) -> int: ...

    async def drain(self, cancel: bool = False) -> None: ...


class Closing:
    """What every window does with what is due: its closes run beside the poll, at most
    `concurrency` at once, an order never twice at a time; `closed` counts the orders its
    `_close` changed. A window says what is due (`start_due`'s query) and how one closes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], concurrency: int) -> None:
        self.sessions = sessions
        self.concurrency = concurrency
        self.closed = 0
        self._in_flight: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def _close(self, order_id: uuid.UUID) -> bool:
        """Closes one order, idempotently; True if it changed it."""
        raise NotImplementedError

    async def start_due(self, due: Callable[[int], Select[Any]]) -> int:
        """Starts closing what `due(room)` selects (order ids, at most `room`), leaving out
        the orders in flight; returns how many it started."""
        room = self.concurrency - len(self._in_flight)
        if room <= 0:
            return 0
        query = due(room)
        if self._in_flight:
            query = query.where(Order.id.not_in(list(self._in_flight)))
        async with self.sessions() as s:
            found = (await s.scalars(query)).all()
        for order_id in found:
            self._in_flight[order_id] = asyncio.create_task(self._closing(order_id))
        return len(found)

    async def _closing(self, order_id: uuid.UUID) -> None:
        try:
            changed = await self._close(order_id)  # not `+= await`: it reads before awaiting
            self.closed += changed
        finally:
            self._in_flight.pop(order_id, None)

    async def drain(self, cancel: bool = False) -> None:
        tasks = list(self._in_flight.values())
        if cancel:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class PaymentWindow(Closing):
    """Orders awaiting payment past `expires_at`, with no payment stored for them: the
    pending attempt is looked up at its gateway first (SEQ-EH-001, online mode: a payment
    whose webhook never came is confirmed, not cancelled under its payer), then the order is
    cancelled as `timeout` with its stock released, unless a confirmation got there first."""

    name = "payment"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        look_up: LookUp | None = None,
        concurrency: int = 16,
    ) -> None:
        super().__init__(sessions, concurrency)
        self.look_up = look_up

    async def close_due(self) -> int:
        # Money stored for the order wins (its confirmation is finishing step 5): not due.
        payment_stored = exists().where(
            and_(Payment.order_id == Order.id, Payment.status == PaymentStatus.PAID)
        )
        return await self.start_due(
            lambda room: (
                select(Order.id)
                .where(
                    Order.status == OrderStatus.AWAITING_PAYMENT,
                    Order.expires_at <= func.now(),
                    ~payment_stored,
                )
                .order_by(Order.expires_at)
                .limit(room)
            )
        )

    async def _close(self, order_id: uuid.UUID) -> bool:
        try:
            if self.look_up is not None:
                await self._look_up(order_id)
            async with self.sessions.begin() as s:
                changed, _, _ = await close_order(s, order_id, CancelReason.TIMEOUT)
        except Exception as exc:
            log.warning("order %s: window not closed yet: %s", order_id, exc)
            return False
        if changed:
            log.info("order %s expired: cancelled, stock released", order_id)
        return changed

    async def _look_up(self, order_id: uuid.UUID) -> None:
        """Best effort: if the gateway cannot say, the window closes as it would have (money
        found later is parked as a late payment and refunded)."""
        assert self.look_up is not None
        try:
            found = await asyncio.wait_for(self.look_up(str(order_id)), LOOK_UP_SECONDS)
        except Exception as exc:
            log.warning("order %s: payment look-up failed; closing: %s", order_id, exc)
            return
        if found not in ("none", "unknown"):
            log.info("order %s: look-up before its window closed: %s", order_id, found)


class WindowActivities:
    def __init__(
        self,
        windows: Callable[[], Sequence[Window]],
        round_seconds: float = 240.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self.windows = windows  # fresh per round: nothing in flight is shared between rounds
        self.round_seconds = round_seconds
        self.poll_seconds = poll_seconds

    @activity.defn
    async def keep_windows(self) -> int:
        """One round: polls every window until the round's time is up, then waits for the
        closes in flight. Returns how many polls found something due."""
        until = time.monotonic() + self.round_seconds
        windows = list(self.windows())
        found = 0
        try:
            while time.monotonic() < until:
                activity.heartbeat()
                for window in windows:
                    found += await window.close_due()
                await asyncio.sleep(self.poll_seconds)
        except BaseException:  # cancelled, or the database gone: the server retries the round
            for window in windows:
                await window.drain(cancel=True)
            raise
        # A close may still take a while (a gateway look-up: up to LOOK_UP_SECONDS): the round
        # keeps heartbeating meanwhile, or the server would start another beside it.
        draining = asyncio.ensure_future(asyncio.gather(*(w.drain() for w in windows)))
        while not draining.done():
            activity.heartbeat()
            await asyncio.wait({draining}, timeout=DRAIN_HEARTBEAT_SECONDS)
        await draining
        return found
