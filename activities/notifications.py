"""The mail relay: the event feed's mails into the outbox, and senders that deliver them.

One activity run (`relay_mail`, one round of `workflows.mail_relay`) does both for
`round_seconds`: a follower writes each mail an event calls for into the outbox
(`activities.mail_feed`), and `senders` senders deliver due mails side by side
(`activities.mail_senders`), each mail with its own retries. A recipient that is never
accepted delays nobody else's mail, and the mail server being down fails no activity: each
mail waits out its own backoff and goes once the server is back. Payments and statuses
never wait on mail (8a).

Exactly once per event: a mail's row is written once by its dedupe key with its Message-ID;
a row `sent`, `failed` or `skipped` is not sent again. Only a crash between the server's
"250 OK" and the row's update sends twice, then with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.mail_feed import PAGE, follow
from activities.mail_senders import MailConfig, Sender

__all__ = ["MailConfig", "NotificationActivities"]


class NotificationActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: MailConfig) -> None:
        self.sessions = sessions
        self.config = config

    @activity.defn
    async def relay_mail(self) -> int:
        """One round of the relay; returns how many mails its senders finished."""
        until = time.monotonic() + self.config.round_seconds
        sender = Sender(self.sessions, self.config)
        # A task group: one failing (the database gone) stops the others, and the server
        # retries the round.
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(until, sender))
            senders = [
                group.create_task(sender.run(until)) for _ in range(max(1, self.config.senders))
            ]
        return sum(task.result() for task in senders)

    async def _follow(self, until: float, sender: Sender) -> int:
        read = 0
        while time.monotonic() < until:
            activity.heartbeat()
            async with self.sessions.begin() as s:
                page, written = await follow(s, self.config.domain)
            if written:
                sender.woken.set()
            read += page
            if page < PAGE:
                await asyncio.sleep(self.config.poll_seconds)
        return read
