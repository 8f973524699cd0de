"""A real SMTP server's handler for the tests (aiosmtpd): keeps what it accepts, with when;
refuses everything with 451 while `refusing`; defers (450) or refuses (550) chosen recipients
at RCPT, as a full mailbox or a dead address does."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived: list[float] = []  # time.monotonic() of each message
        self.refusing = False
        self.refused = 0
        self.deferred: set[str] = set()  # recipients answered 450, for ever
        self.rejected: set[str] = set()  # recipients answered 550
        self.deferrals = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.deferred:
            self.deferrals += 1
            return "450 4.2.1 mailbox busy, try again later"
        if address in self.rejected:
            return f"550 5.1.1 <{address}>: no such user"  # as servers say it
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 mail system unwell, try again later"
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(
            raw if isinstance(raw, bytes) else raw.encode(), policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.arrived.append(time.monotonic())
        return "250 OK"

    def to_order(self, order_id: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Paysaga-Order"] == order_id]

    def of_kind(self, kind: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["X-Paysaga-Notification"] == kind]

    async def wait_for(self, order_id: str, kind: str, seconds: float = 60) -> EmailMessage:
        for _ in range(int(seconds * 5)):
            found = [m for m in self.to_order(order_id) if m["X-Paysaga-Notification"] == kind]
            if found:
                return found[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {kind} mail for {order_id}: {self.messages}")


@contextmanager
def serving(port: int, smtputf8: bool = True) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1:`port` keeping what it accepts in the Inbox it yields;
    `smtputf8=False` is a server that cannot take non-ASCII addresses, as many cannot."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def mail_env(port: int, organizer: str, **more: str) -> dict[str, str]:
    """The stack's settings for mail to that server (a test module's `stack_env`)."""
    return {
        "PAYSAGA_SMTP_HOST": "127.0.0.1",
        "PAYSAGA_SMTP_PORT": str(port),
        "PAYSAGA_SMTP_FROM": "tickets@pycon.test",
        "PAYSAGA_ORGANIZER_NAME": organizer,
    } | more
