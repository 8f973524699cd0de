"""The confirmation saga's side effects, one activity per step of UC-35.

Every write is idempotent: conditional UPDATEs (`WHERE status = ...`) and inserts keyed by a
natural dedupe key with ON CONFLICT DO NOTHING, so a retried or replayed activity, or a second
workflow for the same payment after retention expired, changes nothing twice.

Data the database refuses as such (not because of its state) is raised as a non-retryable
`Unprocessable` error (`activities.unprocessable`). The cases and refunds of money that
cannot be applied are `activities.parked_money`, registered here under the same class.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Exists, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, aliased
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.confirmation_inputs import (
    ConfirmedAtOnce,
    MarkedPaid,
    MarkPaidInput,
    StoreInput,
    ValidateInput,
    Validation,
)
from activities.confirmation_paid import paid_at_once, write_trail
from activities.parked_money import ParkedMoneyActivities
from activities.unprocessable import printable, refusing_bad_data
from db import journal
from db.fulfilment import fulfilment_seen
from db.journal import as_uuid
from db.models import Order, Payment
from db.orders import NotPayable, mark_paid
from db.session import in_savepoint
from db.tickets import issue_code
from domain import keys
from domain.confirmation import AuditRecord
from domain.fulfilment import FulfilmentSeen
from domain.payments import (
    ATTACHED,
    NOT_PAYABLE,
    UNPROCESSABLE,
    CaseKind,
    Confirmation,
    PaymentState,
)
from domain.statuses import OrderStatus, PaymentStatus
from observability.metrics import CONFIRMATION_SECONDS, CONFIRMATIONS

# An attempt the money may still arrive for: a failed Stripe PaymentIntent can succeed after the
# customer changes card, and money for an attempt that timed out or was cancelled is stored (a
# late payment, then parked with a case), never dropped.
STORABLE = (
    PaymentStatus.PENDING,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELLED,
    PaymentStatus.TIMEOUT,
)


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


async def _attempt_of(s: AsyncSession, inp: ValidateInput) -> Payment | None:
    """The payment row the confirmation belongs to: its own (stored already), the latest
    attempt of the order an admin attached it to, or the attempt of its intent."""
    c = inp.confirmation
    already = await s.scalar(
        select(Payment).where(
            Payment.provider == c.provider, Payment.transaction_id == c.transaction_id
        )
    )
    if already is not None:
        # 3a once the workflow id no longer guards (retention expired): the row decides.
        return already
    if inp.attach_order_id is not None:
        order_uuid = as_uuid(inp.attach_order_id)
        if order_uuid is None:
            return None
        return await s.scalar(
            select(Payment)
            .where(Payment.order_id == order_uuid)
            .order_by(Payment.id.desc())
            .limit(1)
        )
    return await s.scalar(
        select(Payment).where(Payment.provider == c.provider, Payment.intent_id == c.intent_id)
    )


async def _match(s: AsyncSession, inp: ValidateInput) -> tuple[Validation, str | None]:
    """The confirmation against its order; with the order's status, if there is one
    (`awaiting_payment` also for an order paid by this very payment: a step retried)."""
    c = inp.confirmation
    payment = await _attempt_of(s, inp)
    if payment is None:
        return Validation(CaseKind.UNMATCHED, reason="no order has this payment intent"), None
    order = await s.get(Order, payment.order_id)
    assert order is not None  # payments.order_id is a foreign key
    order_id = str(order.id)
    if (c.amount, c.currency) != (order.amount, order.currency):
        return Validation(
            CaseKind.AMOUNT_MISMATCH,
            order_id=order_id,
            reason=(f"paid {c.amount} {c.currency}, order is {order.amount} {order.currency}"),
            expected_amount=order.amount,
            expected_currency=order.currency,
        ), order.status
    if payment.status == PaymentStatus.PAID and payment.transaction_id != c.transaction_id:
        return Validation(
            CaseKind.ALREADY_PAID,
            order_id=order_id,
            reason=f"order already paid by {payment.provider} {payment.transaction_id}",
        ), order.status
    # An order cancelled meanwhile is not refused here: the payment is stored first,
    # and marking the order paid decides (`mark_paid`), parking it as a late payment.
    mine = payment.status == PaymentStatus.PAID and payment.transaction_id == c.transaction_id
    status = OrderStatus.AWAITING_PAYMENT if mine else order.status
    matched = Validation(
        "matched", order_id=order_id, payment_id=payment.id, accept_seconds=order.accept_seconds
    )
    return matched, status


async def _store(s: AsyncSession, inp: StoreInput) -> bool:
    """Step 4 in the caller's transaction: this gateway's attempt becomes paid with the
    transaction (money attached from another gateway gets a row of its own), with its
    `PaymentConfirmed`. True also when an earlier try stored it; False when the order's money
    is another transaction's (an IntegrityError, raised, says the same at commit)."""
    c = inp.confirmation
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


def _authorization(c: Confirmation, v: Validation, status: str | None) -> Validation:
    """An authorization is captured only for an order awaiting payment that it matches.
    Anything else is left uncaptured, so the gateway voids it: never captured and then
    refunded."""
    if v.outcome == "matched" and status == OrderStatus.AWAITING_PAYMENT:
        return v
    why = v.reason or f"the order is {status}"
    return Validation(
        CaseKind.UNCAPTURED,
        order_id=v.order_id,
        reason=f"{why}: left uncaptured; {c.provider.capitalize()} voids it",
        expected_amount=v.expected_amount,
        expected_currency=v.expected_currency,
    )


class ConfirmationActivities(ParkedMoneyActivities):
    """The saga's steps (2, 4, 5, 6, 8) and, inherited, its cases and refunds; the worker
    registers `all()` of them."""

    @activity.defn
    async def validate_confirmation(self, inp: ValidateInput) -> Validation:
        """UC-35 step 2: a known order and intent, with the order's own amount and currency.
        An authorization must also find its order awaiting payment, or it is left uncaptured."""
        async with refusing_bad_data(self.sessions, begin=False) as s:
            v, status = await _match(s, inp)
        return _authorization(inp.confirmation, v, status) if inp.confirmation.needs_capture else v

    @activity.defn
    async def store_payment(self, inp: StoreInput) -> bool:
        """UC-35 step 4. False: the order's payment was taken by another transaction."""
        try:
            async with refusing_bad_data(self.sessions) as s:
                return await _store(s, inp)
        except IntegrityError:
            # The one-paid-payment-per-order or (provider, transaction_id) key refused it.
            return False

    @activity.defn
    async def confirm_at_once(self, inp: ValidateInput) -> ConfirmedAtOnce:
        """UC-35 steps 2, 4 and 5, with 6 and 8, in one transaction, for money that needs no
        capture between them (issue 24: one step of the worker where the happy path had
        five). Each outcome is the one the steps taken one at a time would have: `stored`
        None when the confirmation does not match (nothing written), False when the order's
        payment was taken by another transaction; `marked` None when the order can no longer
        be paid (the payment stays stored, and the workflow's own step 5 parks it). The audit
        entries and the ticket go in a savepoint each, as in `mark_order_paid_and_ticket`;
        an order that waits for its vendor gets no ticket yet (issue 28)."""
        c = inp.confirmation
        v, marked = Validation(CaseKind.UNMATCHED), None
        try:
            async with refusing_bad_data(self.sessions) as s:
                v, _ = await _match(s, inp)
                if v.outcome != "matched":
                    return ConfirmedAtOnce(v, None)
                assert v.order_id is not None and v.payment_id is not None
                if not await _store(s, StoreInput(c, v.order_id, v.payment_id)):
                    return ConfirmedAtOnce(v, False)
                marked = await paid_at_once(s, c, v)
        except IntegrityError:
            return ConfirmedAtOnce(v, False)
        if marked is not None:
            self._count_paid(marked.changed, c)
        return ConfirmedAtOnce(v, True, marked)

    @activity.defn
    async def mark_order_paid(self, inp: StoreInput) -> bool:
        """UC-35 step 5. True if this call changed the order (`OrderPaid` and `OrderPlaced`
        written with it)."""
        c = inp.confirmation
        try:
            async with refusing_bad_data(self.sessions) as s:
                changed = await mark_paid(s, uuid.UUID(inp.order_id), c.provider, c.transaction_id)
        except NotPayable as exc:
            raise ApplicationError(
                f"order {inp.order_id}: {exc}", type=NOT_PAYABLE, non_retryable=True
            ) from exc
        self._count_paid(changed, c)
        return changed

    @activity.defn
    async def mark_order_paid_and_ticket(self, inp: MarkPaidInput) -> MarkedPaid:
        """UC-35 step 5, then 6 and 8 in its transaction when the database takes them: one
        transaction and one step where the happy path had three (issue 24: each step is an
        activation of the worker and a transaction of its own).

        Step 5 decides, as in `mark_order_paid`. The audit entries (6) and the ticket's code
        (8) go in a savepoint each, so neither can hold 5 back or roll it back: one the
        database refuses (6a, 8a) is left to the workflow, which writes it as before, on
        that step's own retries. All three are idempotent, so a retried call is harmless."""
        c = inp.store.confirmation
        order_id = uuid.UUID(inp.store.order_id)
        try:
            async with refusing_bad_data(self.sessions) as s:
                changed = await mark_paid(s, order_id, c.provider, c.transaction_id)
                audited = await in_savepoint(s, "audit", lambda: write_trail(s, inp.audit))
                ticket = (
                    await in_savepoint(s, "ticket", lambda: issue_code(s, order_id))
                    if inp.ticket
                    else None
                )
        except NotPayable as exc:
            raise ApplicationError(
                f"order {order_id}: {exc}", type=NOT_PAYABLE, non_retryable=True
            ) from exc
        self._count_paid(changed, c)
        return MarkedPaid(changed, audited is not None, ticket)

    def _count_paid(self, changed: bool, c: Confirmation) -> None:
        if changed:  # once per order: a retry finds it paid and measures nothing
            CONFIRMATIONS.labels(PaymentState.PAID).inc()
            if c.received_at is not None:
                CONFIRMATION_SECONDS.observe(max(0.0, time.time() - c.received_at))

    @activity.defn
    async def write_audit(self, records: list[AuditRecord]) -> None:
        """UC-35 step 6: append-only, one row per dedupe key however often it is retried.

        An entry whose text the database refuses as such is written escaped, so one bad
        entry cannot hold the trail (and the workflow's completion) back for ever."""
        try:
            async with refusing_bad_data(self.sessions) as s:
                await journal.write_audit(s, records)
        except ApplicationError as exc:
            if exc.type != UNPROCESSABLE:
                raise
            for record in records:
                try:
                    async with refusing_bad_data(self.sessions) as s:
                        await journal.write_audit(s, [record])
                except ApplicationError:
                    escaped = AuditRecord(
                        record.order_id if as_uuid(record.order_id) else None,
                        printable(record.actor),
                        printable(record.action),
                        printable(record.dedupe_key, 1000),
                        {"escaped": printable(record.detail, 4000)},
                    )
                    async with self.sessions.begin() as s:
                        await journal.write_audit(s, [escaped])

    @activity.defn
    async def fulfilment_of(self, order_id: str) -> FulfilmentSeen:
        """SEQ-BP-002: where the order's acceptance stands, for a workflow whose `fulfilment`
        signal did not come by the end of the window (the signal is sent best effort)."""
        async with self.sessions() as s:
            return await fulfilment_seen(s, uuid.UUID(order_id))

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
            self.confirm_at_once,
            self.mark_order_paid,
            self.mark_order_paid_and_ticket,
            self.write_audit,
            self.issue_ticket,
            self.fulfilment_of,
        ]
