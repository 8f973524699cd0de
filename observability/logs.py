"""Logs: one JSON object per line (PAYSAGA_LOG_FORMAT=json) or text, with the workflow id,
transaction id and order id a line is about wherever they are known, and never a secret.

Context travels in a context variable: the webhook route sets it for the confirmation it
handles, and `LogContext` (a worker interceptor) sets it from the running activity's
workflow id, so a module's plain `logging.getLogger(...)` lines carry it without passing it
around. `Redact` is the last guard: any configured secret, bearer token, JWT or gateway
signature that reaches a line anyway is replaced before it is written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

FIELDS = ("workflow_id", "transaction_id", "order_id")
_context: ContextVar[dict[str, str]] = ContextVar("paysaga_log_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Adds `fields` (those not None) to every line logged inside the block."""
    token = _context.set(_context.get() | {k: v for k, v in fields.items() if v})
    try:
        yield
    finally:
        _context.reset(token)


def ids_of_workflow(workflow_id: str) -> dict[str, str]:
    """What a workflow id says: `payment-{provider}-{tx}`, `order-{id}`, `refund-...`."""
    fields = {"workflow_id": workflow_id}
    kind, _, rest = workflow_id.partition("-")
    if kind in ("payment", "refund"):
        provider, _, tx = rest.partition("-")
        if provider.isalnum() and tx:  # a gateway's name, then its transaction id
            fields["transaction_id"] = tx
    elif kind == "order" and rest:
        fields["order_id"] = rest
    return fields


class LogContext(Interceptor):
    """Worker interceptor: each activity logs with the ids of the workflow it runs for."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityContext(next)


class _ActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with log_context(**ids_of_workflow(info.workflow_id or "")):
            return await super().execute_activity(input)


class Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        # The SDK's own loggers (activity.logger, workflow.logger) carry their info as a dict.
        info = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        if isinstance(info, dict) and "workflow_id" in info and not hasattr(record, "workflow_id"):
            for key, value in ids_of_workflow(str(info["workflow_id"])).items():
                setattr(record, key, value)
        return True


# Secret-shaped text, whoever's it is: bearer and basic credentials (Razorpay's key pair goes
# as `Basic base64(id:secret)`), JWTs, Stripe's `v1=` and Standard Webhooks' `v1,`
# signatures, hex HMACs, and Stripe keys and webhook secrets (`sk_live_`, `rk_test_`,
# `whsec_`), configured here or not.
_SECRET_SHAPES = re.compile(
    r"(?i)\bbearer\s+\S+|\bbasic\s+[A-Za-z0-9+/]{16,}={0,2}|eyJ[\w-]+\.[\w-]+\.[\w-]*"
    r"|\bv1[=,][\w+/=-]{16,}|\b[0-9a-f]{64}\b|\b(?:sk|rk)_(?:live|test)_\w{8,}"
    r"|\bwhsec_[\w+/=]{8,}"
)
# A URL's password (`postgresql+asyncpg://app:PASSWORD@db/paysaga`): the user and host stay.
# Userinfo ends at the first `@` before any `/`, `?` or `#`.
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s?#]+):[^@\s/?#]+@")
# Personal data: an e-mail address keeps its domain only (which mail host refused is useful);
# Unicode domains too. Not a Message-ID (`<id@host>`), which names no person.
_EMAIL = re.compile(r"(?<![<\w.%+-])[\w.%+-]+@((?:[\w-]+\.)+\w{2,})\b(?!>)")
# Shorter secrets are found only as whole words: "abc" must not garble every "abcd"; under
# four characters a secret is no secret, and redacting it would eat ordinary digits.
LONG_SECRET = 8
SHORTEST_SECRET = 4


class Redact(logging.Filter):
    """Replaces configured secrets, secret-shaped strings, URL passwords and e-mail addresses
    in the final message."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.secrets = [s for s in ordered if len(s) >= LONG_SECRET]
        short = [re.escape(s) for s in ordered if SHORTEST_SECRET <= len(s) < LONG_SECRET]
        self.short = re.compile(rf"(?<!\w)(?:{'|'.join(short)})(?!\w)") if short else None

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        if self.short is not None:
            text = self.short.sub("[redacted]", text)
        text = _URL_PASSWORD.sub(r"\1:[redacted]@", text)
        text = _EMAIL.sub(r"[redacted]@\1", text)
        return _SECRET_SHAPES.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format call is logged as it was made, never raised
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: getattr(record, k) for k in FIELDS if getattr(record, k, None)}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None))
        return f"{text} [{ids}]" if ids else text


def configure_logging(
    fmt: str, service: str, level: int = logging.INFO, secrets: Sequence[str] = ()
) -> None:
    """The root logger's one handler; every library's lines go through it (uvicorn's too,
    when it is started with `log_config=None`)."""
    handler = logging.StreamHandler()
    handler.addFilter(Context())
    handler.addFilter(Redact(secrets))
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
