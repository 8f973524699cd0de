"""The drop bench's SMTP server (aiosmtpd, in the bench's own process): it keeps, for each
message, the order and the kind of notification it is for (paysaga's `X-Paysaga-Order` and
`X-Paysaga-Notification` headers) and when it arrived. It depends on nothing else the relay
does, so it measures any relay that sends to PAYSAGA_SMTP_HOST/PORT."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from paysaga.devstack import free_port

TICKET = "payment_confirmed"  # the notification a paid order's ticket travels in


@dataclass(frozen=True)
class Arrival:
    order_id: str
    kind: str
    at: float  # epoch seconds
    recipients: int


@dataclass
class Mailbox:
    arrivals: list[Arrival] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        at = time.time()
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        headers = BytesHeaderParser().parsebytes(raw)
        self.arrivals.append(
            Arrival(
                str(headers.get("X-Paysaga-Order", "")),
                str(headers.get("X-Paysaga-Notification", "")),
                at,
                len(envelope.rcpt_tos),
            )
        )
        return "250 OK"

    def tickets(self) -> dict[str, float]:
        """order id -> when its first ticket mail arrived."""
        first: dict[str, float] = {}
        for a in self.arrivals:
            if a.kind == TICKET and a.order_id:
                first[a.order_id] = min(a.at, first.get(a.order_id, a.at))
        return first

    def duplicates(self) -> int:
        tickets = [a for a in self.arrivals if a.kind == TICKET]
        return len(tickets) - len({a.order_id for a in tickets})

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.arrivals:
            out[a.kind] = out.get(a.kind, 0) + 1
        return out


@contextmanager
def mail_server() -> Iterator[tuple[Mailbox, int]]:
    """A running SMTP server on 127.0.0.1 and a free port, stopped on exit."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
