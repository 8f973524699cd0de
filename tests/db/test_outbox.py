"""The outbox's claim on a real PostgreSQL: senders side by side never take one mail twice, a
deferred mail waits alone, and per order the mails keep their order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import outbox


async def add(s: AsyncSession, order_id: uuid.UUID | None, kind: str) -> None:
    key = f"{kind}:{uuid.uuid4()}"
    assert await outbox.enqueue(
        s,
        dedupe_key=key,
        kind=kind,
        recipient="a@b.test",
        message_id=f"<{key}@t>",
        order_id=order_id,
    )


async def claim(sessions: async_sessionmaker[AsyncSession]) -> outbox.Mail | None:
    async with sessions.begin() as s:
        return await outbox.claim(s)


async def test_a_mail_waits_for_its_orders_earlier_mail_and_nobody_waits_on_a_deferral(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    async with sessions.begin() as s:
        await add(s, one, "payment_confirmed")
        await add(s, one, "refund_done")
        await add(s, two, "payment_confirmed")
    ticket = await claim(sessions)
    assert ticket is not None and (ticket.order_id, ticket.kind) == (one, "payment_confirmed")
    # The ticket is out with a sender: its refund mail waits; the other order's goes.
    other = await claim(sessions)
    assert other is not None and other.order_id == two
    assert await claim(sessions) is None
    async with sessions.begin() as s:  # the ticket deferred for a while: still first
        await outbox.deferred(s, ticket.id, "450 busy", timedelta(seconds=30))
    assert await claim(sessions) is None
    async with sessions.begin() as s:
        assert await outbox.enqueue(
            s, dedupe_key="k", kind="escalation", recipient="ops@b.test", message_id="<k@t>"
        )
        assert not await outbox.enqueue(  # the same key again: nothing new
            s, dedupe_key="k", kind="escalation", recipient="ops@b.test", message_id="<k@t>"
        )
    alarm = await claim(sessions)
    assert alarm is not None and alarm.kind == "escalation"
    async with sessions.begin() as s:  # given up: the order's next mail is due
        await outbox.failed(s, ticket.id, "given up")
    refund = await claim(sessions)
    assert refund is not None and (refund.order_id, refund.kind) == (one, "refund_done")


async def test_senders_side_by_side_take_each_mail_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as s:
        for _ in range(40):
            await add(s, uuid.uuid4(), "payment_confirmed")

    async def sender() -> list[int]:
        taken = []
        while (mail := await claim(sessions)) is not None:
            taken.append(mail.id)
        return taken

    results = await asyncio.gather(*(sender() for _ in range(6)))
    every = [mail_id for taken in results for mail_id in taken]
    assert sorted(every) == sorted(set(every)) and len(every) == 40
    assert sum(1 for taken in results if taken) >= 2  # they did work side by side


async def test_a_given_up_mail_can_be_sent_again_and_only_that(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as s:
        await add(s, uuid.uuid4(), "payment_confirmed")
    mail = await claim(sessions)
    assert mail is not None
    async with sessions.begin() as s:
        assert not await outbox.resend(s, mail.id)  # still pending: nothing to do
        await outbox.failed(s, mail.id, "deferred for 3 days")
        assert not await outbox.resend(s, mail.id + 1000)  # no such mail
        assert await outbox.resend(s, mail.id)  # `paysaga admin resend-mail ID`
    again = await claim(sessions)
    assert again is not None and again.id == mail.id
