"""Handing messages to the SMTP server, with what a refusal means for a retry.

smtplib in a thread, one connection per sender kept open between messages (a rush sends many),
opened again when the server has closed it, with a timeout so a hanging server cannot hold a
sender for ever. Each refusal is classified for that message alone: a recipient deferred (4xx)
or refused (5xx) says nothing about the next message on the same connection.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

# Servers quote the address they refuse ("<ana@example.org>: mailbox full"): a person's, kept
# out of the error that is stored, logged and escalated.
_ADDRESS = re.compile(r"<?[^\s<>]+@[^\s<>]+>?")


class MailRefused(Exception):
    """The server refused this message for good (5xx, or an address it cannot take)."""


class MailUnavailable(Exception):
    """The server is down, busy or said "try later" (4xx): this message is tried again."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    timeout: float = 10.0

    def connection(self) -> SmtpConnection:
        return SmtpConnection(self)

    async def send(self, message: EmailMessage) -> None:
        """One message on a connection of its own."""
        connection = self.connection()
        try:
            await connection.send(message)
        finally:
            await connection.close()


class SmtpConnection:
    """One sender's connection: used by one task at a time, reopened when it went away."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        if self._smtp is None:
            server = self.server
            self._smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
        return self._smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def _send(self, message: EmailMessage) -> None:
        try:
            try:
                self._open().send_message(message)
            except smtplib.SMTPServerDisconnected:
                # Closed since the last message (idle timeout): once more on a new connection.
                self._drop()
                self._open().send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise MailRefused(f"recipient refused: {codes}") from exc
            raise MailUnavailable(f"recipient deferred: {codes}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            # A non-ASCII address on a server without SMTPUTF8: no retry will change that.
            raise MailRefused(f"the server cannot take this address: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            self._reset_or_drop()
            error = exc.smtp_error
            text = error.decode(errors="replace") if isinstance(error, bytes) else error
            said = _ADDRESS.sub("<recipient>", text)
            if 500 <= exc.smtp_code < 600:
                raise MailRefused(f"{exc.smtp_code} {said}") from exc
            raise MailUnavailable(f"{exc.smtp_code} {said}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise MailUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _reset_or_drop(self) -> None:
        """After a refused message the connection is kept only if the server still talks."""
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            await asyncio.to_thread(_quit, smtp)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
