"""Escalations on a real PostgreSQL: recorded once by key, one mail per admin address, none
without an address; a circuit's opening escalates once whichever process sees it, however
often the breaker flaps."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.escalations import Alarm, CircuitWatch, EscalationKind, Recipients, escalate
from db.models import Escalation, Notification
from gateways.api import NoMetrics

ADMINS = Recipients(("ops@pycon.test", "cfo@pycon.test"), "pycon.test")


async def rows(sessions: async_sessionmaker[AsyncSession]) -> tuple[list[str], list[str]]:
    async with sessions() as s:
        keys = list(await s.scalars(select(Escalation.key).order_by(Escalation.id)))
        to = list(await s.scalars(select(Notification.recipient).order_by(Notification.id)))
    return keys, to


async def test_an_alarm_is_recorded_once_and_mailed_to_each_admin(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    alarm = Alarm("mail:7", EscalationKind.MAIL_FAILED, "given up", "paysaga admin resend-mail 7")
    async with sessions.begin() as s:
        assert await escalate(s, alarm, ADMINS)
        assert not await escalate(s, alarm, ADMINS)
        assert await escalate(s, Alarm("mail:8", alarm.kind, "x", "y"), Recipients())
    keys, to = await rows(sessions)
    assert keys == ["mail:7", "mail:8"]  # recorded, with or without anyone to mail
    assert to == ["ops@pycon.test", "cfo@pycon.test"]
    async with sessions() as s:
        mail = await s.scalar(select(Notification).limit(1))
    assert mail is not None and mail.kind == "escalation" and mail.order_id is None
    assert mail.data["command"] == "paysaga admin resend-mail 7"


async def test_a_circuit_opening_escalates_once_however_it_flaps_and_wherever(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    counted: list[str] = []
    api = CircuitWatch(NoMetrics(), sessions, ADMINS, counted.append)
    worker = CircuitWatch(NoMetrics(), sessions, ADMINS, counted.append)

    async def settle() -> None:
        for watch in (api, worker):
            await asyncio.gather(*watch._tasks)

    for state in (2, 1, 2, 0, 2):  # open, a failed trial, closed, open again
        api.circuit("stripe", state)
        await settle()
    worker.circuit("stripe", 2)  # the worker's own breaker opens too
    await settle()
    api.circuit("razorpay", 2)
    await settle()
    keys, to = await rows(sessions)
    assert [k.rsplit(":", 1)[0] for k in keys] == ["circuit:stripe", "circuit:razorpay"]
    assert counted == ["circuit_open", "circuit_open"] and len(to) == 4
