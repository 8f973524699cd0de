"""The mails attendees receive, one per kind, built from the event that calls for them.

Pure: no I/O. Each message carries the Message-ID recorded for its notification before the
first try, so a retry after an ambiguous failure sends the same message again, which mail
systems recognise as one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from domain.money import format_money


@dataclass(frozen=True)
class MailOrder:
    """What a mail says about its order."""

    id: str
    attendee_name: str | None
    amount: int
    currency: str
    expires_at: datetime
    ticket_code: str | None = None


@dataclass(frozen=True)
class Letter:
    kind: str
    recipient: str
    message_id: str
    order: MailOrder
    refund_amount: int | None = None  # refund_done: what went back
    refund_currency: str | None = None


def message_id(dedupe_key: str, domain: str) -> str:
    """Stable per notification: the same key gives the same id on every try."""
    return f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]}@{domain}>"


def _short(order_id: str) -> str:
    return order_id.split("-")[0].upper()


def _when(moment: datetime) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC")


def compose(
    letter: Letter,
    *,
    organizer: str,
    sender: str,
    public_url: str,
    sent_at: datetime,
    pdf: bytes | None = None,
) -> EmailMessage:
    o = letter.order
    hello = f"Hello {o.attendee_name}," if o.attendee_name else "Hello,"
    ref = _short(o.id)
    subject, body = _wording(letter, organizer, public_url)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((organizer, sender))
    message["To"] = letter.recipient
    message["Message-ID"] = letter.message_id
    message["Date"] = format_datetime(sent_at)
    message["X-Paysaga-Order"] = o.id
    message["X-Paysaga-Notification"] = letter.kind
    message.set_content("\n".join([hello, "", *body, "", f"— {organizer}", ""]))
    if pdf is not None:
        message.add_attachment(
            pdf, maintype="application", subtype="pdf", filename=f"ticket-{ref}.pdf"
        )
    return message


def _wording(letter: Letter, organizer: str, public_url: str) -> tuple[str, list[str]]:
    """The subject and the body's paragraphs of one kind of mail; ValueError for a kind that
    has none."""
    o = letter.order
    ref = _short(o.id)
    total = format_money(o.amount, o.currency)
    if letter.kind == "payment_confirmed":
        subject = f"{organizer}: your ticket (order {ref})"
        body = [
            f"we received your payment of {total}. Your order {ref} is confirmed.",
            "",
            f"Your ticket code: {o.ticket_code}",
            "Your ticket is attached as a PDF; show its QR code at the entrance.",
            f"You can also download it: {public_url}/api/v1/orders/{o.id}/ticket",
        ]
    elif letter.kind == "payment_failed":
        subject = f"{organizer}: your payment did not go through (order {ref})"
        body = [
            f"your payment of {total} for order {ref} did not go through, and no money was taken.",
            "",
            f"Your seats stay reserved until {_when(o.expires_at)}. To try again, go back to the",
            "checkout and pay once more (another card or method works too). After that time",
            "the order is cancelled and the seats are released.",
        ]
    elif letter.kind == "order_cancelled":
        subject = f"{organizer}: your order {ref} was cancelled"
        body = [
            f"no payment for order {ref} ({total}) arrived by {_when(o.expires_at)}, so the",
            "order was cancelled and its seats released. No money was taken.",
            "If you still want to come, please place a new order.",
        ]
    elif letter.kind == "refund_done":
        amount = format_money(
            letter.refund_amount if letter.refund_amount is not None else o.amount,
            letter.refund_currency or o.currency,
        )
        subject = f"{organizer}: refund of {amount} (order {ref})"
        body = [
            f"we refunded {amount} for order {ref}. Depending on your bank it can take a few",
            "days to appear on your statement.",
        ]
    else:
        raise ValueError(f"no mail for {letter.kind!r}")
    return subject, body
