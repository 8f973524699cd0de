"""Floods: bad signatures by the ten thousand cost rows by the minute, not by the request,
and real confirmations keep being answered meanwhile; an exhausted pool is a 503."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from contextlib import AsyncExitStack

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.security import RejectionLog
from db.models import SecurityEvent
from domain.payments import confirmation_workflow_id
from tests.support.gateway_events import signed_confirmation
from tests.support.stack import Refuse, Stack

FLOOD = 10_000


async def _valid_acks(stack: Stack, n: int) -> list[float]:
    """Sends n real confirmations one after another; returns each ack's seconds."""
    seconds = []
    sent = []
    for _ in range(n):
        order = await stack.place_order("razorpay")
        tx = f"pay_{uuid.uuid4().hex[:14]}"
        request = signed_confirmation("razorpay", order, tx)
        started = time.perf_counter()
        response = await stack.post("/webhooks/razorpay", request)
        seconds.append(time.perf_counter() - started)
        assert response.json() == {"result": "accepted"}
        sent.append(tx)
    # Each ends paid (the test's end checks the invariants: none may be half-way then).
    for tx in sent:
        assert (await stack.result(confirmation_workflow_id("razorpay", tx))).outcome == "paid"
    return seconds


async def test_a_flood_of_bad_signatures_is_counted_not_stored(stack: Stack) -> None:
    quiet = await _valid_acks(stack, 20)
    sent = 0

    async def attacker() -> None:
        nonlocal sent
        while sent < FLOOD:
            sent += 1
            response = await stack.http.post(
                "/webhooks/razorpay",
                content=b'{"event": "payment.captured"}',
                headers={"Content-Type": "application/json", "X-Razorpay-Signature": "00"},
            )
            assert response.status_code == 401

    flood = [asyncio.create_task(attacker()) for _ in range(50)]
    await asyncio.sleep(0.5)
    during = await _valid_acks(stack, 20)
    await asyncio.gather(*flood)
    # The last second's count is flushed within a second or so; on a loaded machine later.
    for _ in range(100):
        async with stack.sessions() as s:
            rows = await s.scalar(select(func.count()).select_from(SecurityEvent))
            counted = await s.scalar(select(func.sum(SecurityEvent.count)))
        if counted == FLOOD:
            break
        await asyncio.sleep(0.1)
    # One row per source and minute: a flood that spans a minute boundary or two, not 10,000.
    assert rows is not None and 1 <= rows <= 3
    assert counted == FLOOD
    ratio = statistics.median(during) / statistics.median(quiet)
    print(
        f"flood: {FLOOD} rejected into {rows} row(s); valid ack median "
        f"{statistics.median(quiet) * 1000:.1f} ms quiet, {statistics.median(during) * 1000:.1f} "
        f"ms during the flood ({ratio:.1f}x)"
    )


async def test_every_pooled_connection_busy_is_a_503(stack: Stack) -> None:
    deps = stack.http._transport.app.state.deps  # type: ignore[attr-defined]
    engine: AsyncEngine = deps.sessions.kw["bind"]
    async with AsyncExitStack() as held:
        for _ in range(20):  # pool_size + max_overflow (db.session)
            conn = await held.enter_async_context(engine.connect())
            await conn.execute(text("SELECT 1"))
        order = await stack.http.get(f"/orders/{uuid.uuid4()}", headers=stack.user())
    assert order.status_code == 503
    assert order.json() == {"detail": "database unavailable, retry later"}


async def test_a_rejection_whose_first_write_fails_is_counted_by_a_later_flush(
    sessions: async_sessionmaker[AsyncSession], refuse: Refuse
) -> None:
    """Under load the first write of a minute's row failed and its rejection was lost (the
    flood counted 9,999 of 10,000); it is now kept for the next flush."""
    rejections = RejectionLog(sessions)
    await refuse("security_events", "INSERT")
    await rejections.record("razorpay", "203.0.113.9", "bad signature", "/webhooks/razorpay")
    await rejections.record("razorpay", "203.0.113.9", "bad signature", "/webhooks/razorpay")
    await refuse.lift("security_events", "INSERT")
    for _ in range(100):
        async with sessions() as s:
            counted = await s.scalar(select(func.sum(SecurityEvent.count)))
        if counted is not None:
            break
        await asyncio.sleep(0.1)
    assert counted == 2
