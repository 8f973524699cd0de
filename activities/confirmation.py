"""The confirmation saga's side effects, one activity per step of UC-35.

Every write is idempotent: conditional UPDATEs (`WHERE status = ...`) and inserts keyed by a
natural dedupe key with ON CONFLICT DO NOTHING, so a retried or replayed activity, or a second
workflow for the same payment after retention expired, changes nothing twice.

Data the database refuses as such (not because of its state) is raised as a non-retryable
`Unprocessable` error: retrying it would loop silently, so the workflow parks it as a case.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Exists, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import QueryableAttribute, aliased
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from db import journal
from db.cases import close_open_cases
from db.errors import is_bad_data
from db.journal import as_uuid
from db.models import Order, Payment, ReconciliationCase, SecurityEvent
from db.orders import NotPayable, mark_paid
from db.refunds import ask_parked_refund
from db.tickets import issue_code
from domain import keys
from domain.confirmation import AuditRecord
from domain.money import BIGINT_MAX
from domain.payments import (
    ATTACHED,
    LATE_PAYMENT,
    NOT_PAYABLE,
    UNPROCESSABLE,
    CaseKind,
    Confirmation,
    OrderStatus,
    PaymentStatus,
    RefundRun,
)
from observability.metrics import CONFIRMATION_SECONDS, CONFIRMATIONS
from workflows.order_signals import tell_paid
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.activities")

# An attempt the money may still arrive for: a failed Stripe PaymentIntent can succeed after the
# customer changes card, and money for an attempt that timed out or was cancelled is stored (a
# late payment, then parked with a case), never dropped.
STORABLE = (
    PaymentStatus.PENDING,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELLED,
    PaymentStatus.TIMEOUT,
)


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
class CloseCasesInput:
    provider: str
    transaction_id: str
    resolution: str


@asynccontextmanager
async def _refusing_bad_data(
    sessions: async_sessionmaker[AsyncSession], *, begin: bool = True
) -> AsyncIterator[AsyncSession]:
    """A session whose data errors (a NUL byte, a lone surrogate, a number out of range) are
    raised as `Unprocessable`: the same data will be refused on every retry."""
    try:
        async with sessions.begin() if begin else sessions() as s:
            yield s
    except (DBAPIError, UnicodeError) as exc:
        if not is_bad_data(exc):
            raise
        raise ApplicationError(
            f"the database refuses this confirmation's data: {exc}"[:500],
            type=UNPROCESSABLE,
            non_retryable=True,
        ) from exc


def _printable(value: object, limit: int = 255) -> str:
    """A value as a case row can always hold it (escaped, ASCII, bounded)."""
    return ascii(value)[:limit]


def _other_money(order_id: QueryableAttribute[uuid.UUID] | uuid.UUID, c: Confirmation) -> Exists:
    """The order has stored other money, paid or since refunded: then it takes no more. The
    one-paid-payment-per-order index guards only while that money is paid, and an attempt
    left open beside money attached from another gateway would take its own gateway's money
    after that money was refunded."""
    other = aliased(Payment)
    return exists().where(
        other.order_id == order_id,
        other.status.in_((PaymentStatus.PAID, PaymentStatus.REFUNDED)),
        or_(other.provider != c.provider, other.transaction_id != c.transaction_id),
    )


async def _store_beside(s: AsyncSession, attempt: Payment, c: Confirmation) -> int | None:
    """Money an admin attached to an order whose attempt is with another gateway is stored
    in a row of its own. Written into the attempt, the row would carry one gateway's name
    with the other's intent id, and the attempt's own checkout return and webhook would no
    longer find their order. None if the order or this money is stored already."""
    stored: int | None = await s.scalar(
        insert(Payment)
        .values(
            order_id=attempt.order_id,
            provider=c.provider,
            # Unique per gateway, as (provider, transaction_id) is; the intent the money named,
            # if any, stays in its confirmation and its case.
            intent_id=f"{ATTACHED}{c.transaction_id}",
            transaction_id=c.transaction_id,
            status=PaymentStatus.PAID,
            amount=c.amount,
            currency=c.currency,
            confirmed_at=func.now(),
        )
        .on_conflict_do_nothing()  # also the one-paid-payment-per-order index
        .returning(Payment.id)
    )
    return stored


class ConfirmationActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client  # to tell an order's lifecycle it is paid

    @activity.defn
    async def validate_confirmation(self, inp: ValidateInput) -> Validation:
        """UC-35 step 2: a known order and intent, with the order's own amount and currency."""
        c = inp.confirmation
        async with _refusing_bad_data(self.sessions, begin=False) as s:
            already = await s.scalar(
                select(Payment).where(
                    Payment.provider == c.provider, Payment.transaction_id == c.transaction_id
                )
            )
            if already is not None:
                # 3a once the workflow id no longer guards (retention expired): the row decides.
                payment: Payment | None = already
            elif inp.attach_order_id is not None:
                order_uuid = as_uuid(inp.attach_order_id)
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
            # An order cancelled meanwhile is not refused here: the payment is stored first,
            # and marking the order paid decides (`mark_paid`), parking it as a late payment.
            return Validation("matched", order_id=order_id, payment_id=payment.id)

    @activity.defn
    async def open_case(self, inp: CaseInput) -> None:
        """2a/2b/4a/5a: keep the money's record for an admin (never dropped); 2a also a
        security event. With a resolution the case is recorded (or closed) as resolved."""
        c, v = inp.confirmation, inp.validation
        resolved = (
            {"state": "resolved", "resolution": inp.resolution, "resolved_at": func.now()}
            if inp.resolution
            else {}
        )
        if v.outcome == CaseKind.UNPROCESSABLE:
            # The data itself is what the database refused: the case keeps it escaped.
            values: dict[str, Any] = {
                "transaction_id": _printable(c.transaction_id),
                "amount": c.amount if 0 <= c.amount <= BIGINT_MAX else 0,
                "currency": "XXX",  # ISO 4217: no currency
                "detail": {"reason": v.reason, "confirmation": _printable(asdict(c), 4000)},
            }
        else:
            values = {
                "transaction_id": c.transaction_id,
                "amount": c.amount,
                "currency": c.currency,
                "detail": {"reason": v.reason, "confirmation": asdict(c)},
            }
        async with _refusing_bad_data(self.sessions) as s:
            case = insert(ReconciliationCase).values(
                kind=v.outcome,
                provider=c.provider,
                order_id=as_uuid(v.order_id),
                **values,
                **resolved,
            )
            if inp.resolution:
                closed = await s.execute(
                    case.on_conflict_do_update(
                        constraint="uq_cases_provider_tx_kind",
                        set_=resolved,
                        where=ReconciliationCase.state == "open",
                    )
                )
                if closed.rowcount:  # type: ignore[attr-defined]
                    CONFIRMATIONS.labels("resolved").inc()
                log.info(
                    "reconciliation case resolved: kind=%s provider=%s transaction_id=%s: %s",
                    v.outcome,
                    c.provider,
                    values["transaction_id"],
                    inp.resolution,
                )
                return
            # A second outage (or a second park) of the same kind reopens its resolved case.
            opened = await s.execute(
                case.on_conflict_do_update(
                    constraint="uq_cases_provider_tx_kind",
                    set_={"state": "open", "resolution": None, "resolved_at": None},
                    where=ReconciliationCase.state == "resolved",
                )
            )
            if v.outcome == CaseKind.AMOUNT_MISMATCH:
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
        if opened.rowcount:  # type: ignore[attr-defined]  # not again when a retry finds it
            CONFIRMATIONS.labels("parked").inc()
        if v.outcome == CaseKind.LATE_PAYMENT and self.client is not None:
            # Money for an order cancelled before it came goes back by itself: its refund
            # workflow asks the gateway (online) or waits for the operator's refund (offline),
            # and settles this parked confirmation once refunded. Idempotent on retries. The
            # pending refund is recorded first, so the order shows it while it runs.
            async with _refusing_bad_data(self.sessions) as s:
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
                self.client,
                activity.info().task_queue,
                RefundRun(c.provider, c.transaction_id, LATE_PAYMENT),
            )
        # 2b2: the admins' alert is this log line (structured, greppable) plus the open case.
        log.warning(
            "reconciliation case opened: kind=%s provider=%s transaction_id=%s order_id=%s: %s",
            v.outcome,
            c.provider,
            values["transaction_id"],
            v.order_id,
            v.reason,
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
        async with _refusing_bad_data(self.sessions) as s:
            status = await ask_parked_refund(
                s,
                c.provider,
                c.transaction_id,
                c.amount,
                c.currency,
                actor=inp.admin,
                reason=inp.reason,
            )
        if status == "succeeded":
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
        async with _refusing_bad_data(self.sessions) as s:
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
        CONFIRMATIONS.labels("refunded").inc()
        return reference

    @activity.defn
    async def store_payment(self, inp: StoreInput) -> bool:
        """UC-35 step 4. False: the order's payment was taken by another transaction."""
        c = inp.confirmation
        try:
            async with _refusing_bad_data(self.sessions) as s:
                # This gateway's attempt, in one statement (the usual case).
                stored = await s.scalar(
                    update(Payment)
                    .where(
                        Payment.id == inp.payment_id,
                        Payment.status.in_(STORABLE),
                        Payment.provider == c.provider,
                        ~_other_money(Payment.order_id, c),
                    )
                    .values(
                        status=PaymentStatus.PAID,
                        transaction_id=c.transaction_id,
                        confirmed_at=func.now(),
                    )
                    .returning(Payment.id)
                )
                if stored is None:
                    attempt = await s.get(Payment, inp.payment_id)
                    if (
                        attempt is not None
                        and attempt.provider != c.provider
                        and attempt.status in STORABLE
                        and not await s.scalar(select(_other_money(attempt.order_id, c)))
                    ):
                        stored = await _store_beside(s, attempt, c)
                if stored is None:
                    # Stored by an earlier try of this step, or taken by another transaction.
                    return bool(
                        await s.scalar(
                            select(Payment.id).where(
                                Payment.order_id == as_uuid(inp.order_id),
                                Payment.status == PaymentStatus.PAID,
                                Payment.provider == c.provider,
                                Payment.transaction_id == c.transaction_id,
                            )
                        )
                    )
                await journal.emit(
                    s,
                    "PaymentConfirmed",
                    inp.order_id,
                    keys.event("PaymentConfirmed", c.provider, c.transaction_id),
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
        """UC-35 step 5. True if this call changed the order. Then the order's lifecycle is
        told, so it ends with `OrderPlaced` (also when a retry finds the order paid already)."""
        c = inp.confirmation
        try:
            async with _refusing_bad_data(self.sessions) as s:
                changed = await mark_paid(s, uuid.UUID(inp.order_id), c.provider, c.transaction_id)
        except NotPayable as exc:
            raise ApplicationError(
                f"order {inp.order_id}: {exc}", type=NOT_PAYABLE, non_retryable=True
            ) from exc
        if changed:  # once per order: a retry finds it paid and measures nothing
            CONFIRMATIONS.labels("paid").inc()
            if c.received_at is not None:
                CONFIRMATION_SECONDS.observe(max(0.0, time.time() - c.received_at))
        await self._tell_order_paid(inp.order_id)
        return changed

    async def _tell_order_paid(self, order_id: str) -> None:
        """Signalled from here, not from the workflow: a workflow's external signal costs the
        confirmation a second workflow task and the server a third of its work per payment."""
        if self.client is not None:
            await tell_paid(self.client, order_id)

    @activity.defn
    async def write_audit(self, records: list[AuditRecord]) -> None:
        """UC-35 step 6: append-only, one row per dedupe key however often it is retried.

        An entry whose text the database refuses as such is written escaped, so one bad
        entry cannot hold the trail (and the workflow's completion) back for ever."""
        try:
            async with _refusing_bad_data(self.sessions) as s:
                await journal.write_audit(s, records)
        except ApplicationError as exc:
            if exc.type != UNPROCESSABLE:
                raise
            for record in records:
                try:
                    async with _refusing_bad_data(self.sessions) as s:
                        await journal.write_audit(s, [record])
                except ApplicationError:
                    escaped = AuditRecord(
                        record.order_id if as_uuid(record.order_id) else None,
                        _printable(record.actor),
                        _printable(record.action),
                        _printable(record.dedupe_key, 1000),
                        {"escaped": _printable(record.detail, 4000)},
                    )
                    async with self.sessions.begin() as s:
                        await journal.write_audit(s, [escaped])

    @activity.defn
    async def issue_ticket(self, order_id: str) -> str:
        """UC-35 step 8: one ticket per order with an unguessable code. Its PDF is made where
        it is first needed (the confirmation mail, a download) and stored once
        (`db.tickets`): rendering costs more CPU than the rest of a confirmation, and most
        tickets are never downloaded before their mail is sent."""
        async with self.sessions.begin() as s:
            return await issue_code(s, uuid.UUID(order_id))

    def all(self) -> list[Any]:
        return [
            self.validate_confirmation,
            self.open_case,
            self.close_cases,
            self.ask_refund,
            self.record_refund,
            self.store_payment,
            self.mark_order_paid,
            self.write_audit,
            self.issue_ticket,
        ]
