"""The confirmation saga's bookkeeping of money it cannot apply: reconciliation cases (2a, 2b,
4a, 5a, late and already-paid money) and the refunds an admin (or a late payment) asks for.

Idempotent like every activity: a case is one row per (provider, transaction id, kind),
reopened or resolved by conditional upserts; a refund is asked once per payment.
`ConfirmationActivities` registers these beside the saga's steps, under the same names.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.confirmation_inputs import CaseInput, CloseCasesInput, RefundInput, Validation
from activities.unprocessable import printable, refusing_bad_data
from db import journal, outbox
from db.cases import close_open_cases
from db.journal import as_uuid
from db.models import Order, Payment, ReconciliationCase, SecurityEvent
from db.refunds import ask_parked_refund
from domain import keys
from domain.money import BIGINT_MAX
from domain.payments import LATE_PAYMENT, CaseKind, Confirmation, PaymentState, RefundRun
from domain.statuses import CaseState, OrderStatus, PaymentStatus, RefundStatus
from mail.messages import message_id
from observability.metrics import CONFIRMATIONS
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.activities")
CASE_KEY = "uq_cases_provider_tx_kind"


def _case_values(c: Confirmation, v: Validation) -> dict[str, Any]:
    """The money's record as a case row holds it."""
    if v.outcome == CaseKind.UNPROCESSABLE:
        # The data itself is what the database refused: the case keeps it escaped.
        return {
            "transaction_id": printable(c.transaction_id),
            "amount": c.amount if 0 <= c.amount <= BIGINT_MAX else 0,
            "currency": "XXX",  # ISO 4217: no currency
            "detail": {"reason": v.reason, "confirmation": printable(asdict(c), 4000)},
        }
    return {
        "transaction_id": c.transaction_id,
        "amount": c.amount,
        "currency": c.currency,
        "detail": {"reason": v.reason, "confirmation": asdict(c)},
    }


# Money for an order that the order did not take: its payer is told what happens to it.
NOT_APPLIED = (CaseKind.LATE_PAYMENT, CaseKind.AMOUNT_MISMATCH, CaseKind.ALREADY_PAID)


async def _tell_payer(s: AsyncSession, c: Confirmation, v: Validation, domain: str) -> None:
    """The payer's "we received X; it will be refunded / an operator will contact you",
    written to the outbox with the case, once per payment and case kind."""
    order_id = as_uuid(v.order_id)
    if v.outcome not in NOT_APPLIED or order_id is None:
        return
    recipient = await s.scalar(select(Order.attendee_email).where(Order.id == order_id))
    if not recipient:
        return
    dedupe_key = f"money_not_applied:{c.provider}:{c.transaction_id}:{v.outcome}"
    await outbox.enqueue(
        s,
        dedupe_key=dedupe_key,
        kind="money_not_applied",
        recipient=recipient,
        message_id=message_id(dedupe_key, domain),
        order_id=order_id,
        data={"amount": c.amount, "currency": c.currency, "case": str(v.outcome)},
    )


class ParkedMoneyActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
        mail_domain: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to start refunds
        self.mail_domain = mail_domain  # None: no mail relay, so no payer's mail

    @activity.defn
    async def open_case(self, inp: CaseInput) -> None:
        """2a/2b/4a/5a: keep the money's record for an admin (never dropped); 2a also a
        security event. With a resolution the case is recorded (or closed) as resolved."""
        c, v = inp.confirmation, inp.validation
        values = _case_values(c, v)
        if inp.resolution:
            await self._resolve_case(c, v, values, inp.resolution)
            return
        async with refusing_bad_data(self.sessions) as s:
            # A second outage (or a second park) of the same kind reopens its resolved case.
            opened = await s.execute(
                self._case(c, v, values).on_conflict_do_update(
                    constraint=CASE_KEY,
                    set_={"state": CaseState.OPEN, "resolution": None, "resolved_at": None},
                    where=ReconciliationCase.state == CaseState.RESOLVED,
                )
            )
            if v.outcome == CaseKind.AMOUNT_MISMATCH:
                await _record_mismatch(s, c, v)
            if opened.rowcount and self.mail_domain:  # type: ignore[attr-defined]
                await _tell_payer(s, c, v, self.mail_domain)
        if opened.rowcount:  # type: ignore[attr-defined]  # not again when a retry finds it
            CONFIRMATIONS.labels("parked").inc()
        if v.outcome == CaseKind.LATE_PAYMENT and self.client is not None:
            await self._refund_late_payment(self.client, c)
        # 2b2: the admins' alert is this log line (structured, greppable) plus the open case.
        log.warning(
            "reconciliation case opened: kind=%s provider=%s transaction_id=%s order_id=%s: %s",
            v.outcome,
            c.provider,
            values["transaction_id"],
            v.order_id,
            v.reason,
        )

    @staticmethod
    def _case(c: Confirmation, v: Validation, values: dict[str, Any], **resolved: Any) -> Insert:
        return insert(ReconciliationCase).values(
            kind=v.outcome, provider=c.provider, order_id=as_uuid(v.order_id), **values, **resolved
        )

    async def _resolve_case(
        self, c: Confirmation, v: Validation, values: dict[str, Any], resolution: str
    ) -> None:
        """The case of a step that recovered: recorded resolved, or closed if it is open."""
        resolved = {
            "state": CaseState.RESOLVED,
            "resolution": resolution,
            "resolved_at": func.now(),
        }
        async with refusing_bad_data(self.sessions) as s:
            closed = await s.execute(
                self._case(c, v, values, **resolved).on_conflict_do_update(
                    constraint=CASE_KEY,
                    set_=resolved,
                    where=ReconciliationCase.state == CaseState.OPEN,
                )
            )
        if closed.rowcount:  # type: ignore[attr-defined]
            CONFIRMATIONS.labels(PaymentState.RESOLVED).inc()
        log.info(
            "reconciliation case resolved: kind=%s provider=%s transaction_id=%s: %s",
            v.outcome,
            c.provider,
            values["transaction_id"],
            resolution,
        )

    async def _refund_late_payment(self, client: Client, c: Confirmation) -> None:
        """Money for an order cancelled before it came goes back by itself: its refund
        workflow asks the gateway (online) or waits for the operator's refund (offline), and
        settles this parked confirmation once refunded. Idempotent on retries. The pending
        refund is recorded first, so the order shows it while it runs."""
        async with refusing_bad_data(self.sessions) as s:
            await ask_parked_refund(
                s,
                c.provider,
                c.transaction_id,
                c.amount,
                c.currency,
                actor=LATE_PAYMENT,
                reason="the order was cancelled before the payment came",
            )
        await start_refund(
            client,
            activity.info().task_queue,
            RefundRun(c.provider, c.transaction_id, LATE_PAYMENT),
        )

    @activity.defn
    async def close_cases(self, inp: CloseCasesInput) -> None:
        async with self.sessions.begin() as s:
            await close_open_cases(s, inp.provider, inp.transaction_id, inp.resolution)

    @activity.defn
    async def ask_refund(self, inp: RefundInput) -> None:
        """An admin sends parked money back: a pending refund, and its workflow, which asks
        the gateway (online) or waits for the operator's refund notice (offline), and tells
        the parked confirmation `refunded` once the money is back. Idempotent on retries."""
        c = inp.confirmation
        async with refusing_bad_data(self.sessions) as s:
            status = await ask_parked_refund(
                s,
                c.provider,
                c.transaction_id,
                c.amount,
                c.currency,
                actor=inp.admin,
                reason=inp.reason,
            )
        if status == RefundStatus.SUCCEEDED:
            return  # refunded already (in the gateway's dashboard): this is settled by it
        assert self.client is not None, "the worker gives confirmations a client"
        await start_refund(
            self.client,
            activity.info().task_queue,
            RefundRun(c.provider, c.transaction_id, inp.admin, settles_parked=True),
        )

    @activity.defn
    async def record_refund(self, inp: RefundInput) -> str:
        """Before REFUND_AT_GATEWAY (kept for the confirmations parked then): an admin's
        refund of parked money was recorded as a decision only, issued in the gateway."""
        c = inp.confirmation
        reference = (
            "rfnd_" + hashlib.sha256(f"{c.provider}:{c.transaction_id}".encode()).hexdigest()[:20]
        )
        async with refusing_bad_data(self.sessions) as s:
            await close_open_cases(
                s,
                c.provider,
                c.transaction_id,
                f"refunded by {inp.admin} ({reference}): {inp.reason}",
            )
            # A late payment was stored against its cancelled order: it is now refunded.
            await s.execute(
                update(Payment)
                .where(
                    Payment.provider == c.provider,
                    Payment.transaction_id == c.transaction_id,
                    Payment.status == PaymentStatus.PAID,
                    Payment.order_id.in_(select(Order.id).where(Order.status != OrderStatus.PAID)),
                )
                .values(status=PaymentStatus.REFUNDED)
            )
            await journal.payment_refunded(
                s,
                inp.order_id,
                c.provider,
                c.transaction_id,
                c.amount,
                c.currency,
                {"reason": inp.reason, "refund_reference": reference, "applied_to_order": False},
            )
        CONFIRMATIONS.labels(PaymentState.REFUNDED).inc()
        return reference


async def _record_mismatch(s: AsyncSession, c: Confirmation, v: Validation) -> None:
    """2a is also a security event: money that does not match its order may be tampering."""
    await s.execute(
        insert(SecurityEvent)
        .values(
            kind="amount_mismatch",
            provider=c.provider,
            transaction_id=c.transaction_id,
            detail={"reason": v.reason, "order_id": v.order_id},
            dedupe_key=keys.amount_mismatch(c.provider, c.transaction_id),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
