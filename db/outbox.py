"""The mail outbox: one `notifications` row per mail, each its own unit of work.

Writers add a row once by its dedupe key, in the transaction that makes the mail true (the
feed follower for events, a case opening, an escalation). Senders claim due rows with
`FOR UPDATE SKIP LOCKED` and a lease (`claimed_until`), so several senders, in one worker or
many, never send one row at once, and a sender that dies leaves the row to another when its
lease ends. A deferral moves only that row's `next_attempt_at`: nobody else waits on it.

Per order, mails keep their order: a row is due only when no earlier row of the same order is
still pending, so a refund mail never overtakes the ticket it follows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Notification
from domain.statuses import NotificationStatus

LEASE = timedelta(minutes=2)  # longer than one render and send; a dead sender's row waits this


@dataclass(frozen=True)
class Mail:
    """A claimed row: what a sender needs to build and send it."""

    id: int
    kind: str
    order_id: uuid.UUID | None
    recipient: str
    message_id: str
    data: dict[str, Any]
    attempts: int
    created_at: datetime


async def enqueue(
    s: AsyncSession,
    *,
    dedupe_key: str,
    kind: str,
    recipient: str,
    message_id: str,
    order_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Adds the mail unless its key is there already; True when this call added it."""
    added = await s.execute(
        insert(Notification)
        .values(
            dedupe_key=dedupe_key,
            kind=kind,
            order_id=order_id,
            recipient=recipient,
            message_id=message_id,
            data=data or {},
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return bool(added.rowcount)  # type: ignore[attr-defined]


# The oldest due row whose order has no earlier mail pending, locked so that a second sender
# skips it rather than waits; the lease is written in the same statement.
_CLAIM = text(
    """
    UPDATE notifications SET claimed_until = now() + :lease
    WHERE id = (
        SELECT n.id FROM notifications n
        WHERE n.status = 'pending' AND n.next_attempt_at <= now()
          AND (n.claimed_until IS NULL OR n.claimed_until < now())
          AND NOT EXISTS (
              SELECT 1 FROM notifications e
              WHERE e.order_id = n.order_id AND e.id < n.id AND e.status = 'pending'
          )
        ORDER BY n.next_attempt_at, n.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, kind, order_id, recipient, message_id, data, attempts, created_at
    """
)


async def claim(s: AsyncSession) -> Mail | None:
    row = (await s.execute(_CLAIM, {"lease": LEASE})).one_or_none()
    return None if row is None else Mail(**row._mapping)


async def sent(s: AsyncSession, mail_id: int) -> None:
    await _finish(s, mail_id, NotificationStatus.SENT, None, sent_at=func.now())


async def failed(s: AsyncSession, mail_id: int, error: str) -> None:
    await _finish(s, mail_id, NotificationStatus.FAILED, error)


async def skipped(s: AsyncSession, mail_id: int, reason: str) -> None:
    """No longer true when its turn came (a "try again" for an order paid since): not sent,
    and the row says why, so the order's later mails go on."""
    await _finish(s, mail_id, NotificationStatus.SKIPPED, reason, attempts=0)


async def deferred(s: AsyncSession, mail_id: int, error: str, wait: timedelta) -> None:
    """Tried and deferred: this row alone waits `wait` before its next try."""
    await s.execute(
        update(Notification)
        .where(Notification.id == mail_id)
        .values(
            attempts=Notification.attempts + 1,
            last_error=error,
            next_attempt_at=func.now() + wait,
            claimed_until=None,
        )
    )


async def _finish(
    s: AsyncSession, mail_id: int, status: str, error: str | None, attempts: int = 1, **more: Any
) -> None:
    await s.execute(
        update(Notification)
        .where(Notification.id == mail_id, Notification.status == NotificationStatus.PENDING)
        .values(
            status=status,
            last_error=error,
            attempts=Notification.attempts + attempts,
            claimed_until=None,
            **more,
        )
    )


async def resend(s: AsyncSession, mail_id: int) -> bool:
    """A given-up mail tried again from now (`paysaga admin resend-mail`), its limit counted
    from now too; False when there is no such mail or it is not `failed`."""
    again = await s.execute(
        update(Notification)
        .where(Notification.id == mail_id, Notification.status == NotificationStatus.FAILED)
        .values(
            status=NotificationStatus.PENDING,
            next_attempt_at=func.now(),
            created_at=func.now(),
            claimed_until=None,
        )
    )
    return bool(again.rowcount)  # type: ignore[attr-defined]
