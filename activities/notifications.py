"""The mail relay: reads the event feed and sends each attendee mail an event calls for, once.

Events drive the mails: `OrderPaid` (the ticket, PDF attached), `PaymentFailed` (how to try
again), `OrderCancelled` by the window (`timeout`), `PaymentRefunded`. The relay follows the
feed with its own cursor (`feed_cursors`, name `mail`) in the order `GET /events` gives, so no
event is skipped and none is read twice.

Exactly once per event: a notification row, keyed by kind and the event's dedupe key, is
recorded with its Message-ID before the first try; a row already `sent` (or `failed`) is
not sent again. Only a crash between the server's "250 OK" and the row's update sends twice,
then with the same Message-ID.

8a for mail: a server that is down or says "try later" fails the activity, and the server
retries it with backoff (`workflows.mail_relay`); payments and statuses never wait on it, and
the mail goes out once the server is back. A server that refuses a message for good (5xx)
marks it `failed` and the relay goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import events as feed
from db.models import FeedCursor, Notification, Order
from db.tickets import NotPaid, ticket_pdf
from domain.statuses import CancelReason, NotificationStatus, OrderStatus
from mail.messages import Letter, MailOrder, compose, message_id
from mail.smtp import MailRefused, MailUnavailable, SmtpServer
from observability.logs import log_context
from observability.metrics import NOTIFICATIONS

log = logging.getLogger("paysaga.mail")

CURSOR = "mail"
PAGE = 100


@dataclass(frozen=True)
class MailConfig:
    smtp: SmtpServer
    sender: str
    organizer: str
    public_url: str
    poll_seconds: float = 0.5  # how soon an idle relay sees a new event
    round_seconds: float = 50.0  # one activity run; the workflow starts the next


def _kind(event: dict[str, Any]) -> str | None:
    data = event["data"]
    match event["type"]:
        case "OrderPaid":
            return "payment_confirmed"
        case "PaymentFailed":
            return "payment_failed"
        case "OrderCancelled" if data.get("reason") == CancelReason.TIMEOUT:
            return "order_cancelled"
        case "PaymentRefunded":
            return "refund_done"
    return None


def _still_true(kind: str, status: str) -> bool:
    """A mail that would mislead by the time it is sent is skipped: a "try again" for an
    order paid since, a ticket for an order refunded since."""
    if kind == "payment_failed":
        return status == OrderStatus.AWAITING_PAYMENT
    if kind == "payment_confirmed":
        return status == OrderStatus.PAID
    return True


class NotificationActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: MailConfig) -> None:
        self.sessions = sessions
        self.config = config

    @activity.defn
    async def relay_mail(self) -> int:
        """One round of the relay: follows the feed for `round_seconds`; returns how many
        events it handled."""
        handled = 0
        deadline = time.monotonic() + self.config.round_seconds
        while time.monotonic() < deadline:
            activity.heartbeat()
            async with self.sessions() as s:
                row = await s.get(FeedCursor, CURSOR)
                assert row is not None, "migration 0003 creates the mail cursor"
                after = feed.Cursor(int(row.txid), row.event_id)
                found = await feed.read(s, after, PAGE)
            # The cursor is written once per page, not per event: most events call for no
            # mail, and a page read again after a crash sends nothing twice (the rows say
            # what was sent).
            done: feed.Cursor | None = None
            try:
                for item in found:
                    activity.heartbeat()
                    kind = _kind(item.event)
                    if kind is not None and item.event["order_id"]:
                        with log_context(order_id=item.event["order_id"]):
                            await self._notify(kind, item)
                    done = item.cursor
                    handled += 1
            finally:
                if done is not None:
                    await self._advance(done)
            if len(found) < PAGE:
                await asyncio.sleep(self.config.poll_seconds)
        return handled

    async def _advance(self, cursor: feed.Cursor) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(FeedCursor)
                .where(FeedCursor.name == CURSOR)
                .values(txid=str(cursor.txid), event_id=cursor.event_id)
            )

    async def _notify(self, kind: str, item: feed.Item) -> None:
        order_id = uuid.UUID(item.event["order_id"])
        async with self.sessions() as s:
            order = await s.get(Order, order_id)
        if order is None or not order.attendee_email or not _still_true(kind, order.status):
            NOTIFICATIONS.labels(kind, "skipped").inc()
            return
        note = await self._claim(kind, item, order)
        if note.status != NotificationStatus.PENDING:
            return  # sent (or refused for good) before: never twice
        pdf, code = None, None
        if kind == "payment_confirmed":
            try:
                ticket = await ticket_pdf(self.sessions, order_id, self.config.organizer)
            except NotPaid:
                NOTIFICATIONS.labels(kind, "skipped").inc()
                return
            pdf, code = ticket.pdf, ticket.code
        data = item.event["data"]
        letter = Letter(
            kind=kind,
            recipient=note.recipient,
            message_id=note.message_id,
            order=MailOrder(
                str(order_id),
                order.attendee_name,
                order.amount,
                order.currency,
                order.expires_at,
                code,
            ),
            refund_amount=data.get("amount") if kind == "refund_done" else None,
            refund_currency=data.get("currency") if kind == "refund_done" else None,
        )
        await self._send(letter, note, pdf)

    async def _claim(self, kind: str, item: feed.Item, order: Order) -> Notification:
        """The mail's row, written once by its dedupe key; its status says if it went out."""
        dedupe_key = f"{kind}:{item.dedupe_key}"
        async with self.sessions.begin() as s:
            await s.execute(
                insert(Notification)
                .values(
                    dedupe_key=dedupe_key,
                    kind=kind,
                    order_id=order.id,
                    recipient=order.attendee_email,
                    message_id=message_id(dedupe_key, self.config.sender.rpartition("@")[2]),
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
            note = await s.scalar(select(Notification).where(Notification.dedupe_key == dedupe_key))
        assert note is not None
        return note

    async def _send(self, letter: Letter, note: Notification, pdf: bytes | None) -> None:
        """Sends it and records the outcome; a mail server that is down is retried (the
        activity fails), one that refuses the mail for good is not."""
        kind, order_id = letter.kind, letter.order.id
        message = compose(
            letter,
            organizer=self.config.organizer,
            sender=self.config.sender,
            public_url=self.config.public_url,
            sent_at=datetime.now(UTC),
            pdf=pdf,
        )
        try:
            await self.config.smtp.send(message)
        except MailUnavailable as exc:
            await self._record(note.id, None, str(exc))
            NOTIFICATIONS.labels(kind, "error").inc()
            log.warning("mail %s to order %s not sent, will retry: %s", kind, order_id, exc)
            raise ApplicationError(
                f"mail server unavailable: {exc}", type="MailUnavailable"
            ) from exc
        except MailRefused as exc:
            await self._record(note.id, NotificationStatus.FAILED, str(exc))
            NOTIFICATIONS.labels(kind, NotificationStatus.FAILED).inc()
            log.error("mail %s to order %s refused for good: %s", kind, order_id, exc)
            return
        await self._record(note.id, NotificationStatus.SENT, None)
        NOTIFICATIONS.labels(kind, NotificationStatus.SENT).inc()
        log.info("mail %s sent for order %s (%s)", kind, order_id, note.message_id)

    async def _record(self, note_id: int, status: str | None, error: str | None) -> None:
        values: dict[str, Any] = {"attempts": Notification.attempts + 1, "last_error": error}
        if status is not None:
            values["status"] = status
        if status == NotificationStatus.SENT:
            values["sent_at"] = func.now()
        async with self.sessions.begin() as s:
            await s.execute(update(Notification).where(Notification.id == note_id).values(values))
