"""The confirmation saga's side effects, one activity per step of UC-35.

Every write is idempotent: conditional UPDATEs (`WHERE status = ...`) and inserts keyed by a
natural dedupe key with ON CONFLICT DO NOTHING, so a retried or replayed activity, or a second
workflow for the same payment after retention expired, changes nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.models import AuditEntry, Event, Order, Payment, ReconciliationCase, SecurityEvent, Ticket
from domain.payments import CaseKind, Confirmation, OrderStatus, PaymentStatus

log = logging.getLogger("paysaga.activities")


@dataclass(frozen=True)
class ValidateInput:
    confirmation: Confirmation
    attach_order_id: str | None = None  # set when an admin attached the payment to an order


@dataclass(frozen=True)
class Validation:
    """`matched`, or the reconciliation case kind the confirmation needs."""

    outcome: str  # "matched" | CaseKind
    order_id: str | None = None
    payment_id: int | None = None
    reason: str = ""
    expected_amount: int | None = None
    expected_currency: str | None = None


@dataclass(frozen=True)
class CaseInput:
    confirmation: Confirmation
    validation: Validation
    resolution: str | None = None  # set: record the case as already resolved (recovered)


@dataclass(frozen=True)
class RefundInput:
    confirmation: Confirmation
    order_id: str | None
    admin: str
    reason: str


@dataclass(frozen=True)
class StoreInput:
    confirmation: Confirmation
    order_id: str
    payment_id: int


@dataclass(frozen=True)
class AuditInput:
    order_id: str | None
    actor: str
    action: str
    dedupe_key: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CloseCasesInput:
    provider: str
    transaction_id: str
    resolution: str


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class ConfirmationActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn
    async def validate_confirmation(self, inp: ValidateInput) -> Validation:
        """UC-35 step 2: a known order and intent, with the order's own amount and currency."""
        c = inp.confirmation
        async with self.sessions() as s:
            already = await s.scalar(
                select(Payment).where(
                    Payment.provider == c.provider, Payment.transaction_id == c.transaction_id
                )
            )
            if already is not None:
                # 3a once the workflow id no longer guards (retention expired): the row decides.
                payment: Payment | None = already
            elif inp.attach_order_id is not None:
                order_uuid = _uuid(inp.attach_order_id)
                payment = (
                    None
                    if order_uuid is None
                    else await s.scalar(
                        select(Payment)
                        .where(Payment.order_id == order_uuid)
                        .order_by(Payment.id.desc())
                        .limit(1)
                    )
                )
            else:
                payment = await s.scalar(
                    select(Payment).where(
                        Payment.provider == c.provider, Payment.intent_id == c.intent_id
                    )
                )
            if payment is None:
                return Validation(CaseKind.UNMATCHED, reason="no order has this payment intent")
            order = await s.get(Order, payment.order_id)
            assert order is not None  # payments.order_id is a foreign key
            order_id = str(order.id)
            if (c.amount, c.currency) != (order.amount, order.currency):
                return Validation(
                    CaseKind.AMOUNT_MISMATCH,
                    order_id=order_id,
                    reason=(
                        f"paid {c.amount} {c.currency}, order is {order.amount} {order.currency}"
                    ),
                    expected_amount=order.amount,
                    expected_currency=order.currency,
                )
            if payment.status == PaymentStatus.PAID and payment.transaction_id != c.transaction_id:
                return Validation(
                    CaseKind.ALREADY_PAID,
                    order_id=order_id,
                    reason=f"order already paid by {payment.provider} {payment.transaction_id}",
                )
            if order.status == OrderStatus.CANCELLED:
                return Validation(
                    CaseKind.LATE_PAYMENT, order_id=order_id, reason="order cancelled"
                )
            return Validation("matched", order_id=order_id, payment_id=payment.id)

    @activity.defn
    async def open_case(self, inp: CaseInput) -> None:
        """2a/2b/4a/5a: keep the money's record for an admin (never dropped); 2a also a
        security event. With a resolution the case is recorded (or closed) as resolved."""
        c, v = inp.confirmation, inp.validation
        async with self.sessions.begin() as s:
            case = insert(ReconciliationCase).values(
                kind=v.outcome,
                provider=c.provider,
                transaction_id=c.transaction_id,
                order_id=_uuid(v.order_id) if v.order_id else None,
                amount=c.amount,
                currency=c.currency,
                detail={"reason": v.reason, "confirmation": asdict(c)},
                **(
                    {"state": "resolved", "resolution": inp.resolution, "resolved_at": func.now()}
                    if inp.resolution
                    else {}
                ),
            )
            if inp.resolution:
                await s.execute(
                    case.on_conflict_do_update(
                        constraint="uq_cases_provider_tx_kind",
                        set_={
                            "state": "resolved",
                            "resolution": inp.resolution,
                            "resolved_at": func.now(),
                        },
                        where=ReconciliationCase.state == "open",
                    )
                )
                log.info(
                    "reconciliation case resolved: kind=%s provider=%s transaction_id=%s: %s",
                    v.outcome,
                    c.provider,
                    c.transaction_id,
                    inp.resolution,
                )
                return
            await s.execute(case.on_conflict_do_nothing(constraint="uq_cases_provider_tx_kind"))
            if v.outcome == CaseKind.AMOUNT_MISMATCH:
                await s.execute(
                    insert(SecurityEvent)
                    .values(
                        kind="amount_mismatch",
                        provider=c.provider,
                        transaction_id=c.transaction_id,
                        detail={"reason": v.reason, "order_id": v.order_id},
                        dedupe_key=f"amount_mismatch:{c.provider}:{c.transaction_id}",
                    )
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                )
        # 2b2: the admins' alert is this log line (structured, greppable) plus the open case.
        log.warning(
            "reconciliation case opened: kind=%s provider=%s transaction_id=%s order_id=%s: %s",
            v.outcome,
            c.provider,
            c.transaction_id,
            v.order_id,
            v.reason,
        )

    @activity.defn
    async def close_cases(self, inp: CloseCasesInput) -> None:
        async with self.sessions.begin() as s:
            await _close_open_cases(s, inp.provider, inp.transaction_id, inp.resolution)

    @activity.defn
    async def record_refund(self, inp: RefundInput) -> str:
        """An admin sends parked money back. Offline mode (no gateway API keys): the decision
        and its reference are recorded here; the refund itself is issued in the gateway."""
        c = inp.confirmation
        reference = (
            "rfnd_" + hashlib.sha256(f"{c.provider}:{c.transaction_id}".encode()).hexdigest()[:20]
        )
        async with self.sessions.begin() as s:
            await _close_open_cases(
                s,
                c.provider,
                c.transaction_id,
                f"refunded by {inp.admin} ({reference}): {inp.reason}",
            )
            await _emit(
                s,
                "PaymentRefunded",
                inp.order_id,
                f"PaymentRefunded:{c.provider}:{c.transaction_id}",
                {
                    "provider": c.provider,
                    "transaction_id": c.transaction_id,
                    "amount": c.amount,
                    "currency": c.currency,
                    "reason": inp.reason,
                    "refund_reference": reference,
                    "applied_to_order": False,
                },
            )
        return reference

    @activity.defn
    async def store_payment(self, inp: StoreInput) -> bool:
        """UC-35 step 4. False: the order's payment was taken by another transaction."""
        c = inp.confirmation
        try:
            async with self.sessions.begin() as s:
                stored = await s.scalar(
                    update(Payment)
                    .where(Payment.id == inp.payment_id, Payment.status == PaymentStatus.PENDING)
                    .values(
                        status=PaymentStatus.PAID,
                        provider=c.provider,
                        transaction_id=c.transaction_id,
                        confirmed_at=func.now(),
                    )
                    .returning(Payment.id)
                )
                if stored is None:
                    row = await s.get(Payment, inp.payment_id)
                    return (
                        row is not None
                        and row.status == PaymentStatus.PAID
                        and (row.provider, row.transaction_id) == (c.provider, c.transaction_id)
                    )
                await _emit(
                    s,
                    "PaymentConfirmed",
                    inp.order_id,
                    f"PaymentConfirmed:{c.provider}:{c.transaction_id}",
                    {
                        "provider": c.provider,
                        "transaction_id": c.transaction_id,
                        "amount": c.amount,
                        "currency": c.currency,
                    },
                )
                return True
        except IntegrityError:
            # The one-paid-payment-per-order or (provider, transaction_id) key refused it.
            return False

    @activity.defn
    async def mark_order_paid(self, inp: StoreInput) -> bool:
        """UC-35 step 5, only once the paid payment row exists. True if this call changed it."""
        c = inp.confirmation
        order_uuid = uuid.UUID(inp.order_id)
        async with self.sessions.begin() as s:
            payment_stored = exists().where(
                and_(
                    Payment.order_id == order_uuid,
                    Payment.status == PaymentStatus.PAID,
                    Payment.provider == c.provider,
                    Payment.transaction_id == c.transaction_id,
                )
            )
            changed = await s.scalar(
                update(Order)
                .where(
                    Order.id == order_uuid,
                    Order.status == OrderStatus.AWAITING_PAYMENT,
                    payment_stored,
                )
                .values(status=OrderStatus.PAID, paid_at=func.now(), updated_at=func.now())
                .returning(Order.id)
            )
            if changed is not None:
                await _emit(
                    s,
                    "OrderPaid",
                    inp.order_id,
                    f"OrderPaid:{inp.order_id}",
                    {"provider": c.provider, "transaction_id": c.transaction_id},
                )
                return True
            status = await s.scalar(select(Order.status).where(Order.id == order_uuid))
        if status == OrderStatus.PAID:
            return False
        raise ApplicationError(
            f"order {inp.order_id} is {status}, cannot be marked paid",
            type="OrderNotPayable",
            non_retryable=True,
        )

    @activity.defn
    async def write_audit(self, entries: list[AuditInput]) -> None:
        """UC-35 step 6: append-only, one row per dedupe key however often it is retried."""
        async with self.sessions.begin() as s:
            for e in entries:
                await s.execute(
                    insert(AuditEntry)
                    .values(
                        order_id=_uuid(e.order_id) if e.order_id else None,
                        actor=e.actor,
                        action=e.action,
                        detail=e.detail,
                        dedupe_key=e.dedupe_key,
                    )
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                )

    @activity.defn
    async def issue_ticket(self, order_id: str) -> str:
        """UC-35 step 8: one ticket per order with an unguessable code."""
        order_uuid = uuid.UUID(order_id)
        async with self.sessions.begin() as s:
            await s.execute(
                insert(Ticket)
                .values(order_id=order_uuid, code=secrets.token_urlsafe(18))
                .on_conflict_do_nothing(index_elements=["order_id"])
            )
            code = await s.scalar(select(Ticket.code).where(Ticket.order_id == order_uuid))
        assert code is not None
        return code

    def all(self) -> list[Any]:
        return [
            self.validate_confirmation,
            self.open_case,
            self.close_cases,
            self.record_refund,
            self.store_payment,
            self.mark_order_paid,
            self.write_audit,
            self.issue_ticket,
        ]


async def _close_open_cases(
    s: AsyncSession, provider: str, transaction_id: str, resolution: str
) -> None:
    await s.execute(
        update(ReconciliationCase)
        .where(
            ReconciliationCase.provider == provider,
            ReconciliationCase.transaction_id == transaction_id,
            ReconciliationCase.state == "open",
        )
        .values(state="resolved", resolution=resolution, resolved_at=func.now())
    )


async def _emit(
    s: AsyncSession, type_: str, order_id: str | None, dedupe_key: str, payload: dict[str, Any]
) -> None:
    """Appends to the event log in the same transaction as the change it reports (an outbox)."""
    await s.execute(
        insert(Event)
        .values(
            type=type_,
            order_id=_uuid(order_id) if order_id else None,
            payload=payload,
            dedupe_key=dedupe_key,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
