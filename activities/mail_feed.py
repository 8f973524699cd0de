"""The mail relay's first half: follows the event feed and writes the mails events call for
into the outbox (`db.outbox`), nothing else: no rendering, no sending, so it keeps up with
any rush.

Events drive the attendee mails: `OrderPaid` (the ticket), `PaymentFailed` (how to try
again), `OrderCancelled` (any reason), `PaymentRefunded`, `RefundFailed`. An order that
needs its vendor's acceptance (SEQ-BP-002) gets its ticket on `VendorAccepted` instead of
`OrderPaid`, and on `VendorRejected` a mail saying its money is coming back (the refund's
own mail follows when it is done); no ticket, so nothing to take to the door. The follower reads
the feed with its own cursor (`feed_cursors`, name `mail`) in the order `GET /events` gives,
so no event is skipped and none is read twice; a page's mails and the cursor past it are
written in one transaction, and a mail's dedupe key (kind and event) makes a page read again
add nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import events as feed
from db import outbox
from db.models import FeedCursor, Order
from domain.statuses import CancelReason, NotificationStatus
from mail.messages import message_id
from observability.metrics import NOTIFICATIONS

CURSOR = "mail"
PAGE = 200


def mail_kind(event: dict[str, Any]) -> str | None:
    match event["type"]:
        case "OrderPaid":
            return "payment_confirmed"
        case "PaymentFailed":
            return "payment_failed"
        # A checkout the gateway failed: the customer got its 503 there and then.
        case "OrderCancelled" if event["data"].get("reason") != CancelReason.CHECKOUT_FAILED:
            return "order_cancelled"
        case "PaymentRefunded":
            return "refund_done"
        case "RefundFailed":
            return "refund_failed"
        case "VendorAccepted":
            return "payment_confirmed"
        case "VendorRejected":
            return "vendor_rejected"
    return None


async def follow(s: AsyncSession, mail_domain: str) -> tuple[int, int]:
    """One page of the feed into the outbox, in the caller's transaction: how many events it
    read (fewer than a page: the feed is read to its end) and how many mails it wrote."""
    row = await s.get(FeedCursor, CURSOR, with_for_update=True)
    assert row is not None, "migration 0003 creates the mail cursor"
    found = await feed.read(s, feed.Cursor(int(row.txid), row.event_id), PAGE)
    if not found:
        return 0, 0
    wanted = [(kind, item) for item in found if (kind := mail_kind(item.event)) is not None]
    ids = {uuid.UUID(item.event["order_id"]) for _, item in wanted if item.event["order_id"]}
    found_orders = await s.execute(
        select(Order.id, Order.attendee_email, Order.accept_seconds).where(Order.id.in_(ids))
    )
    addresses, accepting = {}, set()
    for order_id, email, accept_seconds in found_orders:
        addresses[order_id] = email
        if accept_seconds is not None:
            accepting.add(order_id)
    written = 0
    for kind, item in wanted:
        order_id = item.event["order_id"] and uuid.UUID(item.event["order_id"])
        if item.event["type"] == "OrderPaid" and order_id in accepting:
            continue  # its ticket waits for the vendor's acceptance (`VendorAccepted`)
        recipient = addresses.get(order_id) if order_id else None
        if not recipient:
            NOTIFICATIONS.labels(kind, NotificationStatus.SKIPPED).inc()  # nobody to tell
            continue
        dedupe_key = f"{kind}:{item.dedupe_key}"
        written += await outbox.enqueue(
            s,
            dedupe_key=dedupe_key,
            kind=kind,
            recipient=recipient,
            message_id=message_id(dedupe_key, mail_domain),
            order_id=order_id,
            data=item.event["data"],
        )
    last = found[-1].cursor
    await s.execute(
        update(FeedCursor)
        .where(FeedCursor.name == CURSOR)
        .values(txid=str(last.txid), event_id=last.event_id)
    )
    return len(found), written
