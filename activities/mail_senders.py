"""The mail relay's second half: senders that claim due mails from the outbox and send them.

Each sender works on one mail at a time over its own SMTP connection (kept open between
mails); several run side by side, in one worker or many (`db.outbox` claims with a lease),
and tickets render in a process pool. A mail's outcome is its own:
- taken by the server: `sent`;
- no longer true when its turn came (a "try again" for an order paid since): `skipped`;
- deferred (the server down, busy, or a 4xx for this recipient): tried again after a backoff
  of its own, while every other mail goes on; past the give-up limit it ends `failed`;
- refused for good (5xx, an address the server cannot take): `failed` at once.
A mail given up escalates to the admins (`db.escalations`), unless it was itself one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db import escalations, outbox
from db.models import Order
from db.tickets import NotPaid, ticket_pdf
from domain.statuses import NotificationStatus, OrderStatus
from mail.messages import Letter, MailOrder, compose
from mail.smtp import MailRefused, MailUnavailable, SmtpConnection, SmtpServer
from observability.logs import log_context
from observability.metrics import ESCALATIONS, NOTIFICATIONS

log = logging.getLogger("paysaga.mail")


@dataclass(frozen=True)
class MailConfig:
    smtp: SmtpServer
    sender: str
    organizer: str
    public_url: str
    admins: Sequence[str] = ()  # PAYSAGA_ADMIN_EMAIL: escalations go there
    senders: int = 4  # mails in flight at once
    render_processes: int = 2  # tickets rendered at once (0: in a thread)
    give_up_after: timedelta = timedelta(days=3)  # a mail deferred this long ends `failed`
    retry_max: timedelta = timedelta(minutes=1)  # the longest wait between two tries
    poll_seconds: float = 0.5  # how soon an idle sender sees a mail another process wrote
    round_seconds: float = 50.0  # one activity run; the workflow starts the next

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]

    @property
    def escalations(self) -> escalations.Recipients:
        return escalations.Recipients(tuple(self.admins), self.domain)


def _still_true(kind: str, status: str) -> bool:
    """A mail that would mislead by the time it is sent is skipped: a "try again" for an
    order paid since, a ticket for an order refunded since."""
    if kind == "payment_failed":
        return status == OrderStatus.AWAITING_PAYMENT
    if kind == "payment_confirmed":
        return status == OrderStatus.PAID
    return True


class Sender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: MailConfig) -> None:
        self.sessions = sessions
        self.config = config
        # Set by the follower when it wrote mails: idle senders start at once, not at their
        # next poll (which still finds mails written elsewhere, and deferred ones due).
        self.woken = asyncio.Event()

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self.woken.wait(), self.config.poll_seconds)
        except TimeoutError:
            return
        self.woken.clear()

    async def run(self, until: float) -> int:
        """Sends due mails until the monotonic time `until`; returns how many it finished."""
        done = 0
        connection = self.config.smtp.connection()
        try:
            while time.monotonic() < until:
                activity.heartbeat()
                async with self.sessions.begin() as s:
                    mail = await outbox.claim(s)
                if mail is None:
                    await self._idle()
                    continue
                with log_context(order_id=str(mail.order_id or "")):
                    await self.deliver(mail, connection)
                done += 1
        finally:
            await connection.close()
        return done

    async def deliver(self, mail: outbox.Mail, connection: SmtpConnection) -> None:
        letter, pdf = await self._letter(mail)
        if letter is None:
            return
        message = compose(
            letter,
            organizer=self.config.organizer,
            sender=self.config.sender,
            public_url=self.config.public_url,
            sent_at=datetime.now(UTC),
            pdf=pdf,
        )
        try:
            await connection.send(message)
        except MailUnavailable as exc:
            await self._deferred(mail, str(exc))
            return
        except MailRefused as exc:
            await self._give_up(mail, f"refused: {exc}")
            return
        async with self.sessions.begin() as s:
            await outbox.sent(s, mail.id)
        NOTIFICATIONS.labels(mail.kind, NotificationStatus.SENT).inc()
        log.info("mail %s sent (%s)", mail.kind, mail.message_id)

    async def _letter(self, mail: outbox.Mail) -> tuple[Letter | None, bytes | None]:
        """What the mail says, read now; None (and the mail `skipped`) if no longer true."""
        if mail.order_id is None:
            return Letter(mail.kind, mail.recipient, mail.message_id, None, mail.data), None
        async with self.sessions() as s:
            order = await s.get(Order, mail.order_id)
        if order is None or not _still_true(mail.kind, order.status):
            await self._skip(mail, f"order is {order.status if order else 'gone'}")
            return None, None
        pdf, code = None, None
        if mail.kind == "payment_confirmed":
            try:
                ticket = await ticket_pdf(
                    self.sessions,
                    order.id,
                    self.config.organizer,
                    self.config.render_processes,
                )
            except NotPaid:
                await self._skip(mail, "order not paid")
                return None, None
            pdf, code = ticket.pdf, ticket.code
        about = MailOrder(
            str(order.id),
            order.attendee_name,
            order.amount,
            order.currency,
            order.expires_at,
            code,
        )
        return Letter(mail.kind, mail.recipient, mail.message_id, about, mail.data), pdf

    async def _skip(self, mail: outbox.Mail, reason: str) -> None:
        async with self.sessions.begin() as s:
            await outbox.skipped(s, mail.id, reason)
        NOTIFICATIONS.labels(mail.kind, NotificationStatus.SKIPPED).inc()

    async def _deferred(self, mail: outbox.Mail, error: str) -> None:
        if datetime.now(UTC) - mail.created_at >= self.config.give_up_after:
            await self._give_up(mail, f"deferred for {self.config.give_up_after}: {error}")
            return
        wait = min(timedelta(seconds=2**mail.attempts), self.config.retry_max)
        async with self.sessions.begin() as s:
            await outbox.deferred(s, mail.id, error, wait)
        NOTIFICATIONS.labels(mail.kind, "error").inc()
        log.warning("mail %s deferred, next try in %s: %s", mail.kind, wait, error)

    async def _give_up(self, mail: outbox.Mail, error: str) -> None:
        """`failed` and, in the same transaction, its escalation (not for an escalation)."""
        async with self.sessions.begin() as s:
            await outbox.failed(s, mail.id, error)
            escalated = mail.kind != escalations.MAIL_KIND and await escalations.escalate(
                s, escalations.mail_alarm(mail, error), self.config.escalations
            )
        NOTIFICATIONS.labels(mail.kind, NotificationStatus.FAILED).inc()
        log.error("mail %s given up: %s", mail.kind, error)
        if escalated:
            ESCALATIONS.labels(escalations.EscalationKind.MAIL_FAILED).inc()
