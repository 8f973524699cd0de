"""Escalations: what a person must act on, recorded once each and mailed to the admins.

An escalation is one row by its key (a case opened at a given time, a mail, a circuit opening),
so a sweep that finds the same thing again escalates nothing new. Recording it adds one mail
per admin address to the outbox in the same transaction; with no address configured it is
only recorded (and the caller logs and counts it). Each says what happened and the exact
command that acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import outbox
from db.models import Escalation, ReconciliationCase
from domain.money import format_money
from domain.payments import NOT_CAPTURED, CaseKind
from domain.statuses import CaseState
from gateways.api import CLOSED, OPEN, GatewayMetrics
from mail.messages import message_id

log = logging.getLogger("paysaga.escalations")
MAIL_KIND = "escalation"
# Money that came in and is not applied: parked, waiting for an operator.
PARKED = (
    CaseKind.UNMATCHED,
    CaseKind.AMOUNT_MISMATCH,
    CaseKind.ALREADY_PAID,
    CaseKind.LATE_PAYMENT,
    CaseKind.UNPROCESSABLE,
)
STUCK = (CaseKind.STORE_FAILED, CaseKind.STATUS_UPDATE_FAILED)  # a confirmation not through


class EscalationKind(StrEnum):
    """The `paysaga_escalations_total{kind}` label and the mail's subject."""

    MONEY_PARKED = "money_parked"
    CONFIRMATION_STUCK = "confirmation_stuck"
    REFUND_FAILED = "refund_failed"
    CIRCUIT_OPEN = "circuit_open"
    MAIL_FAILED = "mail_failed"


@dataclass(frozen=True)
class Recipients:
    """Who escalations are mailed to, and the domain of their Message-IDs; no admins (or no
    mail relay): escalations are recorded, logged and counted only."""

    admins: tuple[str, ...] = ()
    domain: str = "paysaga.invalid"


@dataclass(frozen=True)
class Alarm:
    key: str
    kind: EscalationKind
    summary: str
    command: str
    detail: dict[str, Any] = field(default_factory=dict)


async def escalate(s: AsyncSession, alarm: Alarm, to: Recipients) -> bool:
    """Records the alarm once; True when this call recorded it (then it mails each admin)."""
    added = await s.scalar(
        insert(Escalation)
        .values(
            key=alarm.key,
            kind=alarm.kind,
            summary=alarm.summary,
            command=alarm.command,
            detail=alarm.detail,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Escalation.id)
    )
    if added is None:
        return False
    for address in to.admins:
        dedupe_key = f"{MAIL_KIND}:{alarm.key}:{address}"
        await outbox.enqueue(
            s,
            dedupe_key=dedupe_key,
            kind=MAIL_KIND,
            recipient=address,
            message_id=message_id(dedupe_key, to.domain),
            data={
                "escalation": alarm.kind,
                "summary": alarm.summary,
                "command": alarm.command,
                "detail": alarm.detail,
            },
        )
    return True


def case_alarm(case: ReconciliationCase) -> Alarm:
    """The escalation of an open case; a case reopened later is a new one (its key)."""
    money = format_money(case.amount, case.currency)
    ref = f"{case.provider} {case.transaction_id}"
    show = f"paysaga admin show {ref}"
    if case.kind == CaseKind.REFUND_FAILED:
        kind = EscalationKind.REFUND_FAILED
        summary = f"The refund of {money} ({ref}) failed at the gateway or got no answer."
        command = f"{show}; then `paysaga admin refund {ref} --reason ...` again, or resolve it"
    elif case.kind in NOT_CAPTURED:
        kind = EscalationKind.MONEY_PARKED
        summary = f"An authorization of {money} ({ref}) was not captured: {case.kind}."
        command = f"{show}; then `paysaga admin retry {ref}` or `paysaga admin resolve {ref}`"
    elif case.kind in STUCK:
        kind = EscalationKind.CONFIRMATION_STUCK
        summary = f"The confirmation of {money} ({ref}) is stuck: {case.kind}."
        command = f"{show}; then `paysaga admin retry {ref}`"
    else:
        kind = EscalationKind.MONEY_PARKED
        summary = f"{money} ({ref}) was received and not applied: {case.kind}."
        command = (
            f"{show}; then `paysaga admin attach {ref} ORDER_ID`, "
            f"`paysaga admin refund {ref} --reason ...` or `paysaga admin resolve {ref} --note ...`"
        )
    return Alarm(
        key=f"case:{case.id}:{case.opened_at.timestamp():.0f}",
        kind=kind,
        summary=summary,
        command=command,
        detail={
            "case_kind": case.kind,
            "provider": case.provider,
            "transaction_id": case.transaction_id,
            "order_id": str(case.order_id) if case.order_id else None,
            "amount": case.amount,
            "currency": case.currency,
            "opened_at": case.opened_at.isoformat(),
        },
    )


async def cases_to_escalate(
    s: AsyncSession, older_than: timedelta, limit: int = 100
) -> list[ReconciliationCase]:
    """Open cases that call for a person: a failed refund at once; parked money and stuck
    confirmations past `older_than`. Those escalated already are left out by their keys."""
    aged = ReconciliationCase.opened_at < func.now() - older_than
    due = (ReconciliationCase.kind == CaseKind.REFUND_FAILED) | (
        ReconciliationCase.kind.in_([*PARKED, *NOT_CAPTURED, *STUCK]) & aged
    )
    rows = await s.scalars(
        select(ReconciliationCase)
        .where(ReconciliationCase.state == CaseState.OPEN, due)
        .order_by(ReconciliationCase.opened_at)
        .limit(limit * 4)
    )
    cases = list(rows)
    known = set(
        await s.scalars(
            select(Escalation.key).where(Escalation.key.in_([case_alarm(c).key for c in cases]))
        )
    )
    return [c for c in cases if case_alarm(c).key not in known][:limit]


def mail_alarm(mail: outbox.Mail, error: str) -> Alarm:
    order = f" for order {mail.order_id}" if mail.order_id else ""
    return Alarm(
        key=f"mail:{mail.id}",
        kind=EscalationKind.MAIL_FAILED,
        summary=f"A {mail.kind} mail{order} was given up: {error}",
        command=f"paysaga admin resend-mail {mail.id}",
        detail={"notification_id": mail.id, "order_id": str(mail.order_id or ""), "error": error},
    )


class CircuitWatch:
    """A process's gateway metrics (`gateways.api.GatewayMetrics`) that also escalate a
    circuit's opening: when a provider's breaker goes from closed to open, once per provider
    and ten minutes whichever process sees it (its key), so a flapping breaker or several
    processes opening together make one mail."""

    def __init__(
        self,
        inner: GatewayMetrics,
        sessions: async_sessionmaker[AsyncSession],
        to: Recipients,
        counted: Callable[[str], None],
    ) -> None:
        self.inner, self.sessions, self.to, self.counted = inner, sessions, to, counted
        self._states: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, provider: str, call: str, result: str, seconds: float) -> None:
        self.inner.call(provider, call, result, seconds)

    def circuit(self, provider: str, state: int) -> None:
        self.inner.circuit(provider, state)
        was, self._states[provider] = self._states.get(provider, CLOSED), state
        if state != OPEN or was != CLOSED:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._escalate(provider))
        except RuntimeError:  # no loop: nothing to escalate from (a test's direct call)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _escalate(self, provider: str) -> None:
        alarm = Alarm(
            key=f"circuit:{provider}:{int(time.time()) // 600}",
            kind=EscalationKind.CIRCUIT_OPEN,
            summary=(
                f"{provider}'s API failed repeatedly: paysaga stopped calling it for a while "
                "(checkouts answer 503, look-ups and refunds wait and retry)."
            ),
            command=(
                f"check {provider}'s status page; `paysaga admin cases` once it is back "
                "(the breaker closes by itself after a successful trial call)"
            ),
            detail={"provider": provider},
        )
        try:
            async with self.sessions.begin() as s:
                recorded = await escalate(s, alarm, self.to)
        except Exception:  # the alarm must never break the call that tripped it
            log.exception("escalation of %s's open circuit not recorded", provider)
            return
        if recorded:
            self.counted(alarm.kind)
            log.error("escalation %s: %s Act: %s", alarm.kind, alarm.summary, alarm.command)
