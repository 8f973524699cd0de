"""Handing a message to the SMTP server, with what a refusal means for a retry.

smtplib in a thread: one short connection per message (mails are rare next to payments),
with a timeout so a hanging server cannot hold the relay for ever.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage


class MailRefused(Exception):
    """The server refused this message for good (5xx): trying again will not help."""


class MailUnavailable(Exception):
    """The server is down, busy or said "try later" (4xx): the relay retries."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    timeout: float = 10.0

    def _send(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise MailRefused(f"recipient refused: {codes}") from exc
            raise MailUnavailable(f"recipient deferred: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise MailRefused(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise MailUnavailable(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)
