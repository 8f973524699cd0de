"""The mails attendees receive, one per kind, built from the event that calls for them.

Pure: no I/O. Each message carries the Message-ID recorded for its notification before the
first try, so a retry after an ambiguous failure sends the same message again, which mail
systems recognise as one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from domain.money import format_money
from domain.statuses import VENDOR_TIMEOUT


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
    order: MailOrder | None  # None: an escalation to the admins
    data: dict[str, Any] = field(default_factory=dict)  # what the event or case said


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
    subject, body = _wording(letter, organizer, public_url)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((organizer, sender))
    message["To"] = letter.recipient
    message["Message-ID"] = letter.message_id
    message["Date"] = format_datetime(sent_at)
    message["X-Paysaga-Notification"] = letter.kind
    if letter.order is None:
        message.set_content("\n".join([*body, "", f"— paysaga for {organizer}", ""]))
        return message
    o = letter.order
    message["X-Paysaga-Order"] = o.id
    hello = f"Hello {o.attendee_name}," if o.attendee_name else "Hello,"
    message.set_content("\n".join([hello, "", *body, "", f"— {organizer}", ""]))
    if pdf is not None:
        message.add_attachment(
            pdf, maintype="application", subtype="pdf", filename=f"ticket-{_short(o.id)}.pdf"
        )
    return message


def _wording(letter: Letter, organizer: str, public_url: str) -> tuple[str, list[str]]:
    """The subject and the body's paragraphs of one kind of mail; ValueError for a kind that
    has none."""
    if letter.kind == "escalation":
        return _escalation(letter.data)
    if letter.order is None or letter.kind not in _KINDS:
        raise ValueError(f"no mail for {letter.kind!r}")
    return _KINDS[letter.kind](letter.order, letter.data, organizer, public_url)


Wording = tuple[str, list[str]]


def _ticket(o: MailOrder, data: dict[str, Any], organizer: str, public_url: str) -> Wording:
    ref, total = _short(o.id), format_money(o.amount, o.currency)
    return f"{organizer}: your ticket (order {ref})", [
        f"we received your payment of {total}. Your order {ref} is confirmed.",
        "",
        f"Your ticket code: {o.ticket_code}",
        "Your ticket is attached as a PDF; show its QR code at the entrance.",
        f"You can also download it: {public_url}/api/v1/orders/{o.id}/ticket",
    ]


def _payment_failed(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    ref, total = _short(o.id), format_money(o.amount, o.currency)
    return f"{organizer}: your payment did not go through (order {ref})", [
        f"your payment of {total} for order {ref} did not go through, and no money was taken.",
        "",
        f"Your seats stay reserved until {_when(o.expires_at)}. To try again, go back to the",
        "checkout and pay once more (another card or method works too). After that time",
        "the order is cancelled and the seats are released.",
    ]


def _cancelled(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    ref, total = _short(o.id), format_money(o.amount, o.currency)
    why = {
        "timeout": f"no payment for order {ref} ({total}) arrived by {_when(o.expires_at)}, so the",
        "customer": f"as you asked, we cancelled order {ref} ({total}). The",
    }.get(str(data.get("reason")), f"the organiser cancelled your order {ref} ({total}). The")
    return f"{organizer}: your order {ref} was cancelled", [
        f"{why} order is cancelled and its seats are released. No money was taken.",
        "If you still want to come, please place a new order.",
    ]


def _refund_amount(o: MailOrder, data: dict[str, Any]) -> str:
    amount = data.get("amount")
    return format_money(
        int(amount) if amount is not None else o.amount, str(data.get("currency") or o.currency)
    )


def _refunded(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    ref, amount = _short(o.id), _refund_amount(o, data)
    return f"{organizer}: refund of {amount} (order {ref})", [
        f"we refunded {amount} for order {ref}. Depending on your bank it can take a few",
        "days to appear on your statement.",
    ]


def _refund_failed(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    ref, amount = _short(o.id), _refund_amount(o, data)
    return f"{organizer}: your refund of {amount} is delayed (order {ref})", [
        f"the payment service could not complete the refund of {amount} for order {ref}.",
        "Our team has been told and will complete it or contact you; you need do nothing.",
    ]


def _vendor_rejected(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    """SEQ-BP-002: the vendor did not accept the paid order (or did not answer in time)."""
    ref, total = _short(o.id), format_money(o.amount, o.currency)
    timed_out = data.get("reason") == VENDOR_TIMEOUT
    why = "did not confirm it in time" if timed_out else "could not accept it"
    return f"{organizer}: your order {ref} could not be accepted", [
        f"we are sorry: the seller of order {ref} {why}, so the order will not be fulfilled.",
        "",
        f"Your payment of {total} is being refunded to you in full; you need do nothing.",
        "We will write again once the refund is done.",
    ]


def _not_applied(o: MailOrder, data: dict[str, Any], organizer: str, url: str) -> Wording:
    """Money that came in and was not applied to the order: what happens to it next."""
    ref, received = _short(o.id), _refund_amount(o, data)
    case = data.get("case")
    if case == "late_payment":
        why = f"it arrived after order {ref} had been cancelled, so it was not applied."
        then = "It will be refunded to you in full; you need do nothing."
    elif case == "already_paid":
        why = f"order {ref} was already paid, so this second payment was not applied."
        then = "An operator will contact you and refund it; you need do nothing."
    else:
        total = format_money(o.amount, o.currency)
        why = f"order {ref} costs {total}, so the payment could not be applied as it is."
        then = "An operator will contact you to settle it; you need do nothing."
    return f"{organizer}: we received {received} (order {ref})", [
        f"we received a payment of {received}, but {why}",
        then,
    ]


_KINDS = {
    "payment_confirmed": _ticket,
    "payment_failed": _payment_failed,
    "order_cancelled": _cancelled,
    "refund_done": _refunded,
    "refund_failed": _refund_failed,
    "money_not_applied": _not_applied,
    "vendor_rejected": _vendor_rejected,
}


def _escalation(data: dict[str, Any]) -> Wording:
    """To the admins: what happened and the command that acts on it."""
    detail = data.get("detail") or {}
    facts = [f"  {k}: {v}" for k, v in sorted(detail.items()) if v not in (None, "")]
    return f"[paysaga] {data.get('escalation')}: action needed", [
        str(data.get("summary")),
        "",
        "To act on it:",
        f"  {data.get('command')}",
        "",
        "Details:",
        *facts,
    ]
