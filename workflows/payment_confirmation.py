"""UC-35 as one saga: `payment-{provider}-{transaction_id}`.

Read top to bottom it is the use case: 2 validate, 3 idempotency, 4 store, 5 mark paid,
6 audit, 8 ticket; extensions 2a (mismatch), 2b (no order) and 3a (duplicates) are named
where they happen. Money that cannot be applied is parked here, with an open reconciliation
case, until an admin `attach`es it to an order, `refund`s or `resolve`s it.

Failure paths (4a, 5a, 6a, 8a) share one pattern, `_durably`: the activity's retry policy
retries fast for a first phase; then the workflow itself is the durable failure record. It
says `PaymentState = needs_reconciliation` (4a, 5a), opens a case if the database lets it, and
keeps trying at a slower pace, or at once when an admin (or the reconciliation schedule)
sends `retry`. Nothing is given up: giving up would lose a payment that really happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import (
        AuditInput,
        CaseInput,
        CloseCasesInput,
        ConfirmationActivities,
        RefundInput,
        StoreInput,
        ValidateInput,
        Validation,
    )
    from domain.payments import (
        AdminRequest,
        CaseKind,
        Confirmation,
        ConfirmationOutcome,
        PaymentState,
        RecoveryTiming,
    )

PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
TRANSACTION_ID = SearchAttributeKey.for_keyword("TransactionId")

# Reads and writes of our own database where nothing is in flight yet (opening a case when
# the database is known to be up, closing cases): waited out, never given up on.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# One attempt: the workflow's own slow loop decides when the next one happens.
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
# An order that is no longer payable (cancelled meanwhile) will not become payable by retrying.
NOT_RETRYABLE = ["OrderNotPayable"]
# Once the money is applied (or settled), attach, refund and resolve have nothing to act on.
APPLIED = frozenset(
    {
        PaymentState.STORED,
        PaymentState.PAID,
        PaymentState.COMPLETED,
        PaymentState.RESOLVED,
        PaymentState.REFUNDED,
    }
)
SHORT_DB_CALL = timedelta(seconds=10)
# First attempts of each step run as local activities: three tries within about 0.3 s.
LOCAL_FIRST = "local-activity-first"
LOCAL_FAILURES = (ActivityError, ApplicationError, ActivityTimeout)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=NOT_RETRYABLE,
)
AUDIT_FALLBACK = "AUDIT_FALLBACK"


def _stopped_for_good(err: FailureError) -> bool:
    # A regular activity's failure arrives as ActivityError wrapping the cause; a local
    # activity's arrives as the cause itself.
    cause = err.cause if isinstance(err, ActivityError) else err
    return isinstance(cause, ApplicationError) and cause.type in NOT_RETRYABLE


def _describe(err: BaseException) -> str:
    while err.__cause__ is not None or getattr(err, "cause", None) is not None:
        err = getattr(err, "cause", None) or err.__cause__  # type: ignore[assignment]
    return f"{type(err).__name__}: {err}"[:500]


@workflow.defn(name="ConfirmPayment")
class ConfirmPaymentWorkflow:
    @workflow.init
    def __init__(self, c: Confirmation) -> None:
        self._c = c
        self._timing = c.recovery or RecoveryTiming()
        self._state = PaymentState.RECEIVED
        self._order_id: str | None = None
        self._ticket_code: str | None = None
        self._cases: list[str] = []
        self._parked = False
        self._requests: list[tuple[str, AdminRequest]] = []
        self._seen_request_ids: set[str] = set()
        self._ignored: list[dict[str, Any]] = []
        self._stuck: dict[str, str] = {}
        self._retry_generation = 0
        self._audit_queue: list[AuditInput] = []
        self._audit_fallback_logged: set[str] = set()
        self._finished = False

    @workflow.run
    async def run(self, c: Confirmation) -> ConfirmationOutcome:
        # 6: the audit trail is written beside the saga, never in its way (6a).
        audit_writer = asyncio.create_task(self._write_audit_trail())
        attach_to: str | None = None
        while True:
            # 2: authenticity was checked at the edge; here the order, intent and amount.
            validation: Validation = await self._durably(
                "validate",
                ConfirmationActivities.validate_confirmation,
                ValidateInput(c, attach_to),
                case=CaseKind.STORE_FAILED,
            )
            if validation.outcome == "matched":
                assert validation.order_id is not None and validation.payment_id is not None
                await self._set_state(PaymentState.VALIDATED, validation.order_id)
                # 3a: the workflow id admits one run per payment; behind it the database
                # keys (provider, transaction_id) and one-paid-payment-per-order decide.
                # 4: store the payment (4a: waited out). False: this order's payment went to
                # another transaction.
                store = StoreInput(c, validation.order_id, validation.payment_id)
                if await self._durably(
                    "store",
                    ConfirmationActivities.store_payment,
                    store,
                    case=CaseKind.STORE_FAILED,
                ):
                    self._drop_requests()
                    break
                validation = Validation(
                    CaseKind.ALREADY_PAID,
                    order_id=validation.order_id,
                    reason="the order's payment was taken by another transaction",
                )
            # 2a (amount or currency mismatch), 2b (no matching order), or money for an order
            # that is already paid or cancelled: keep it as a case and wait for an admin.
            action, request = await self._park(c, validation)
            if action in ("resolve", "refund"):
                outcome = await (self._resolve if action == "resolve" else self._refund)(c, request)
                return await self._finish(audit_writer, outcome)
            # attach: validate against the admin's order; retry: validate afresh (the order
            # may have been created, or fixed, since).
            attach_to = request.order_id if action == "attach" else None

        await self._set_state(PaymentState.STORED)
        # 5: Paid/Confirmed, only once the payment row exists and only if the order still
        # awaits payment (5a: waited out, the order ends paid once).
        await self._durably(
            "mark_paid",
            ConfirmationActivities.mark_order_paid,
            store,
            case=CaseKind.STATUS_UPDATE_FAILED,
        )
        await self._set_state(PaymentState.PAID)
        self._queue_audit(*_confirmation_audit(c, store.order_id))
        if self._cases:
            await self._record(
                ConfirmationActivities.close_cases,
                CloseCasesInput(c.provider, c.transaction_id, f"attached to order {attach_to}"),
            )
        # 8: the ticket, retried on its own (8a): it never rolls back payment or status.
        self._ticket_code = await self._durably(
            "ticket", ConfirmationActivities.issue_ticket, store.order_id, case=None
        )
        return await self._finish(
            audit_writer,
            ConfirmationOutcome("paid", store.order_id, self._ticket_code, list(self._cases)),
        )

    async def _finish(
        self, audit_writer: asyncio.Task[None], outcome: ConfirmationOutcome
    ) -> ConfirmationOutcome:
        # The pending audit entries stay in this workflow until they are written.
        self._finished = True
        await audit_writer
        if outcome.outcome == "paid":
            await self._set_state(PaymentState.COMPLETED)
        return outcome

    # -- failure paths -------------------------------------------------------------------

    async def _durably(self, step: str, fn: Any, arg: Any, *, case: CaseKind | None) -> Any:
        """Runs one step until it succeeds: fast retries first, then the slow, signalled loop."""
        t = self._timing
        first_phase = t.first_phase if step != "audit" else min(t.first_phase, 60.0)
        done, result = await self._try_locally(fn, arg)
        if done:
            return result
        # Still failing: the server holds the retries (visible in the UI as a pending activity)
        # for the rest of the first phase.
        try:
            return await workflow.execute_activity_method(
                fn,
                arg,
                start_to_close_timeout=SHORT_DB_CALL,
                schedule_to_close_timeout=timedelta(seconds=first_phase),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=min(1.0, t.fast_max)),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=t.fast_max),
                    non_retryable_error_types=NOT_RETRYABLE,
                ),
            )
        except ActivityError as err:
            if _stopped_for_good(err):
                raise
            failure = _describe(err)
        # The first phase is spent. From here the workflow is the failure record.
        self._stuck[step] = failure
        workflow.logger.warning(
            "%s step %s still failing after %.0f s: %s",
            self._c.provider,
            step,
            first_phase,
            failure,
        )
        if step == "audit":
            self._log_audit_fallback()
        resume_state = self._state
        case_recorded = False
        if case is not None:
            await self._set_state(PaymentState.NEEDS_RECONCILIATION)
            case_recorded = await self._try_open_case(case, failure)
        delay = t.slow_initial
        attempts = 0
        while True:
            try:
                await workflow.wait_condition(
                    self._retry_requested_since(self._retry_generation),
                    timeout=timedelta(seconds=delay),
                )
            except TimeoutError:
                pass
            attempts += 1
            if case is not None and not case_recorded:
                case_recorded = await self._try_open_case(case, failure)
            try:
                result = await workflow.execute_activity_method(
                    fn, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=ONE_ATTEMPT
                )
                break
            except ActivityError as err:
                if _stopped_for_good(err):
                    raise
                self._stuck[step] = failure = _describe(err)
                if step == "audit":
                    self._log_audit_fallback()
                delay = min(delay * 2, t.slow_max)
        del self._stuck[step]
        if case is not None:
            # Keep the history: the case ends resolved, whether or not it could be opened.
            await self._record(
                ConfirmationActivities.open_case,
                CaseInput(
                    self._c,
                    Validation(case, order_id=self._order_id, reason=failure),
                    resolution=f"recovered automatically after {attempts} slow attempt(s)",
                ),
            )
            if case not in self._cases:
                self._cases.append(case)
            await self._set_state(resume_state)
        return result

    async def _try_locally(self, fn: Any, arg: Any) -> tuple[bool, Any]:
        """The common case: a short database call that succeeds, run in the worker without a
        round trip through the server. (True, result), or (False, None) once the local
        attempts are spent; a failure that no retry can mend is raised.

        Bounded by attempts, not by a schedule-to-close timeout: with temporalio 1.35 a
        failing local activity with a 1 s schedule-to-close was still retrying after 30 s,
        inside one workflow task.
        """
        if not workflow.patched(LOCAL_FIRST):
            return False, None
        try:
            return True, await workflow.execute_local_activity_method(
                fn, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=LOCAL_RETRY
            )
        except LOCAL_FAILURES as err:
            if _stopped_for_good(err):
                raise
            return False, None

    async def _record(self, fn: Any, arg: Any) -> Any:
        """Bookkeeping in our own database (cases, refunds): a local activity first, then
        server-side retries until the database takes it; nothing is in flight to lose."""
        done, result = await self._try_locally(fn, arg)
        if done:
            return result
        return await workflow.execute_activity_method(
            fn, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=DATABASE_RETRY
        )

    def _retry_requested_since(self, generation: int) -> Callable[[], bool]:
        return lambda: self._retry_generation != generation

    async def _try_open_case(self, case: CaseKind, reason: str) -> bool:
        """Best effort: the database may be the thing that is down."""
        try:
            await workflow.execute_activity_method(
                ConfirmationActivities.open_case,
                CaseInput(self._c, Validation(case, order_id=self._order_id, reason=reason)),
                start_to_close_timeout=SHORT_DB_CALL,
                retry_policy=ONE_ATTEMPT,
            )
        except ActivityError:
            return False
        if case not in self._cases:
            self._cases.append(case)
        return True

    # -- 6: the audit trail ----------------------------------------------------------------

    def _queue_audit(self, *entries: AuditInput) -> None:
        self._audit_queue.extend(entries)

    async def _write_audit_trail(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._audit_queue) or self._finished)
            if not self._audit_queue:
                return
            batch = list(self._audit_queue)
            await self._durably("audit", ConfirmationActivities.write_audit, batch, case=None)
            del self._audit_queue[: len(batch)]

    def _log_audit_fallback(self) -> None:
        """6a: entries the database refused go to the log, marked, once each; they stay queued."""
        for entry in self._audit_queue:
            if entry.dedupe_key in self._audit_fallback_logged:
                continue
            self._audit_fallback_logged.add(entry.dedupe_key)
            workflow.logger.error(
                "%s %s", AUDIT_FALLBACK, json.dumps(asdict(entry), sort_keys=True, default=str)
            )

    # -- parked money and admin decisions --------------------------------------------------

    async def _park(self, c: Confirmation, v: Validation) -> tuple[str, AdminRequest]:
        await self._record(ConfirmationActivities.open_case, CaseInput(c, v))
        if v.outcome not in self._cases:
            self._cases.append(v.outcome)
        parked_as = {
            CaseKind.UNMATCHED: PaymentState.UNMATCHED,
            CaseKind.AMOUNT_MISMATCH: PaymentState.AMOUNT_MISMATCH,
        }.get(CaseKind(v.outcome), PaymentState.NEEDS_RECONCILIATION)
        await self._set_state(parked_as, v.order_id)
        self._parked = True
        await workflow.wait_condition(lambda: bool(self._requests))
        self._parked = False
        return self._requests.pop(0)

    async def _resolve(self, c: Confirmation, request: AdminRequest) -> ConfirmationOutcome:
        note = request.note or ""
        await self._record(
            ConfirmationActivities.close_cases,
            CloseCasesInput(c.provider, c.transaction_id, f"resolved by {request.admin}: {note}"),
        )
        await self._set_state(PaymentState.RESOLVED)
        return ConfirmationOutcome("resolved", self._order_id, None, list(self._cases))

    async def _refund(self, c: Confirmation, request: AdminRequest) -> ConfirmationOutcome:
        reference = await self._record(
            ConfirmationActivities.record_refund,
            RefundInput(c, self._order_id, request.admin, request.reason or ""),
        )
        self._queue_audit(
            AuditInput(
                self._order_id,
                request.admin,
                "payment.refunded",
                f"payment.refunded:{c.provider}:{c.transaction_id}",
                {
                    "provider": c.provider,
                    "transaction_id": c.transaction_id,
                    "amount": c.amount,
                    "currency": c.currency,
                    "reason": request.reason or "",
                    "refund_reference": reference,
                },
            )
        )
        await self._set_state(PaymentState.REFUNDED)
        return ConfirmationOutcome("refunded", self._order_id, None, list(self._cases))

    async def _set_state(self, state: PaymentState, order_id: str | None = None) -> None:
        self._state = state
        updates = [PAYMENT_STATE.value_set(state.value)]
        if order_id is not None and order_id != self._order_id:
            self._order_id = order_id
            updates.append(ORDER_ID.value_set(order_id))
        workflow.upsert_search_attributes(updates)

    def _admin(self, action: str, request: AdminRequest) -> None:
        """Every admin signal acts at most once (request id) and leaves an audit entry."""
        if request.request_id in self._seen_request_ids:
            return
        self._seen_request_ids.add(request.request_id)
        if action == "retry" and self._stuck:
            self._retry_generation += 1  # every stuck step tries again now
            acted = True
        elif self._parked or (action != "retry" and self._state not in APPLIED):
            # Queued: acted on when the payment parks (at once if it is parked already).
            self._requests.append((action, request))
            acted = True
        else:
            acted = False
            self._ignored.append(asdict(request) | {"action": action, "state": self._state.value})
        self._audit_request(action, request, "" if acted else ".ignored")

    def _drop_requests(self) -> None:
        """The payment is applied: queued attach/refund/resolve requests can no longer act."""
        for action, request in self._requests:
            self._ignored.append(asdict(request) | {"action": action, "state": "stored"})
            self._audit_request(action, request, ".ignored")
        self._requests.clear()

    def _audit_request(self, action: str, request: AdminRequest, suffix: str) -> None:
        c = self._c
        detail = {
            "provider": c.provider,
            "transaction_id": c.transaction_id,
            "state": self._state.value,
        }
        detail |= {k: v for k, v in asdict(request).items() if v is not None and k != "admin"}
        self._queue_audit(
            AuditInput(
                request.order_id or self._order_id,
                request.admin,
                f"admin.{action}{suffix}",
                f"admin.{action}{suffix}:{c.provider}:{c.transaction_id}:{request.request_id}",
                detail,
            )
        )

    @workflow.signal
    def retry(self, request: AdminRequest) -> None:
        """Try the failing step now (4a/5a/6a/8a), or validate a parked payment afresh."""
        self._admin("retry", request)

    @workflow.signal
    def attach(self, request: AdminRequest) -> None:
        """2b: an admin names the order this payment belongs to."""
        self._admin("attach", request)

    @workflow.signal
    def refund(self, request: AdminRequest) -> None:
        """Parked money goes back to the payer; the cases close with the reason."""
        self._admin("refund", request)

    @workflow.signal
    def resolve(self, request: AdminRequest) -> None:
        """Closes the open cases with the admin's note (e.g. settled outside paysaga)."""
        self._admin("resolve", request)

    @workflow.query
    def state(self) -> dict[str, Any]:
        return {
            "state": self._state.value,
            "order_id": self._order_id,
            "ticket_code": self._ticket_code,
            "cases": list(self._cases),
            "parked": self._parked,
            "stuck": dict(self._stuck),
            "pending_audit": [e.dedupe_key for e in self._audit_queue],
            "pending_requests": [asdict(r) | {"action": a} for a, r in self._requests],
            "ignored_requests": list(self._ignored),
            "request_ids": sorted(self._seen_request_ids),
        }


def _confirmation_audit(c: Confirmation, order_id: str) -> tuple[AuditInput, AuditInput]:
    source = {"provider": c.provider, "transaction_id": c.transaction_id}
    return (
        AuditInput(
            order_id,
            f"gateway:{c.provider}",
            "payment.confirmed",
            f"payment.confirmed:{c.provider}:{c.transaction_id}",
            source
            | {
                "amount": c.amount,
                "currency": c.currency,
                "event_id": c.event_id,
                "event_type": c.event_type,
            },
        ),
        AuditInput(
            order_id,
            "paysaga",
            "order.status_changed",
            f"order.status_changed:{order_id}:paid",
            source | {"from": "awaiting_payment", "to": "paid"},
        ),
    )
