"""UC-35 as one saga: `payment-{provider}-{transaction_id}`.

Read top to bottom it is the use case: 2 validate, 3 idempotency, 4 store, 5 mark paid,
6 audit, 8 ticket; extensions 2a (mismatch), 2b (no order) and 3a (duplicates) are named
where they happen. Money that cannot be applied is parked here, with an open reconciliation
case, until an admin `attach`es it to an order or `resolve`s it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import (
        AuditInput,
        CaseInput,
        CloseCasesInput,
        ConfirmationActivities,
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
    )

PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
TRANSACTION_ID = SearchAttributeKey.for_keyword("TransactionId")

# Reads and writes of our own database: a database outage is waited out, never given up on,
# because giving up would lose a payment that really happened.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
# An order that is no longer payable (cancelled meanwhile) will not become payable by retrying.
STATUS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["OrderNotPayable"],
)
# Downstream of the confirmation (6a audit, 8a ticket): retried on their own, never blocking it.
DOWNSTREAM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SHORT_DB_CALL = timedelta(seconds=15)


@workflow.defn(name="ConfirmPayment")
class ConfirmPaymentWorkflow:
    def __init__(self) -> None:
        self._state = PaymentState.RECEIVED
        self._order_id: str | None = None
        self._ticket_code: str | None = None
        self._cases: list[str] = []
        self._requests: list[tuple[str, AdminRequest]] = []
        self._seen_request_ids: set[str] = set()

    @workflow.run
    async def run(self, c: Confirmation) -> ConfirmationOutcome:
        attach_to: str | None = None
        while True:
            # 2: authenticity was checked at the edge; here the order, intent and amount.
            validation = await workflow.execute_activity_method(
                ConfirmationActivities.validate_confirmation,
                ValidateInput(c, attach_to),
                start_to_close_timeout=SHORT_DB_CALL,
                retry_policy=DATABASE_RETRY,
            )
            if validation.outcome == "matched":
                assert validation.order_id is not None and validation.payment_id is not None
                await self._set_state(PaymentState.VALIDATED, validation.order_id)
                # 3a: the workflow id admits one run per payment; behind it the database
                # keys (provider, transaction_id) and one-paid-payment-per-order decide.
                # 4: store the payment. False: this order's payment went to another transaction.
                store = StoreInput(c, validation.order_id, validation.payment_id)
                if await workflow.execute_activity_method(
                    ConfirmationActivities.store_payment,
                    store,
                    start_to_close_timeout=SHORT_DB_CALL,
                    retry_policy=DATABASE_RETRY,
                ):
                    break
                validation = Validation(
                    CaseKind.ALREADY_PAID,
                    order_id=validation.order_id,
                    reason="the order's payment was taken by another transaction",
                )
            # 2a (amount or currency mismatch), 2b (no matching order), or money for an order
            # that is already paid or cancelled: keep it as a case and wait for an admin.
            action, request = await self._park(c, validation)
            if action == "resolve":
                return await self._resolve(c, request)
            attach_to = request.order_id
            await self._audit(
                AuditInput(
                    attach_to,
                    request.admin,
                    "payment.attach_requested",
                    f"attach:{c.provider}:{c.transaction_id}:{request.request_id}",
                    {"provider": c.provider, "transaction_id": c.transaction_id},
                )
            )

        await self._set_state(PaymentState.STORED)
        # 5: Paid/Confirmed, conditional on the order still awaiting payment.
        await workflow.execute_activity_method(
            ConfirmationActivities.mark_order_paid,
            store,
            start_to_close_timeout=SHORT_DB_CALL,
            retry_policy=STATUS_RETRY,
        )
        await self._set_state(PaymentState.PAID)
        if self._cases:
            await workflow.execute_activity_method(
                ConfirmationActivities.close_cases,
                CloseCasesInput(c.provider, c.transaction_id, f"attached to order {attach_to}"),
                start_to_close_timeout=SHORT_DB_CALL,
                retry_policy=DATABASE_RETRY,
            )
        # 6 (audit) and 8 (ticket) run side by side with their own retries: neither
        # rolls back nor holds back the payment and status already stored (6a, 8a).
        _, self._ticket_code = await asyncio.gather(
            self._audit(*_confirmation_audit(c, store.order_id)),
            workflow.execute_activity_method(
                ConfirmationActivities.issue_ticket,
                store.order_id,
                start_to_close_timeout=SHORT_DB_CALL,
                retry_policy=DOWNSTREAM_RETRY,
            ),
        )
        await self._set_state(PaymentState.COMPLETED)
        return ConfirmationOutcome("paid", store.order_id, self._ticket_code, list(self._cases))

    async def _park(self, c: Confirmation, v: Validation) -> tuple[str, AdminRequest]:
        await workflow.execute_activity_method(
            ConfirmationActivities.open_case,
            CaseInput(c, v),
            start_to_close_timeout=SHORT_DB_CALL,
            retry_policy=DATABASE_RETRY,
        )
        if v.outcome not in self._cases:
            self._cases.append(v.outcome)
        parked_as = {
            CaseKind.UNMATCHED: PaymentState.UNMATCHED,
            CaseKind.AMOUNT_MISMATCH: PaymentState.AMOUNT_MISMATCH,
        }.get(CaseKind(v.outcome), PaymentState.NEEDS_RECONCILIATION)
        await self._set_state(parked_as, v.order_id)
        await workflow.wait_condition(lambda: bool(self._requests))
        return self._requests.pop(0)

    async def _resolve(self, c: Confirmation, request: AdminRequest) -> ConfirmationOutcome:
        note = request.note or ""
        await workflow.execute_activity_method(
            ConfirmationActivities.close_cases,
            CloseCasesInput(c.provider, c.transaction_id, f"resolved by {request.admin}: {note}"),
            start_to_close_timeout=SHORT_DB_CALL,
            retry_policy=DATABASE_RETRY,
        )
        await self._audit(
            AuditInput(
                self._order_id,
                request.admin,
                "reconciliation.resolved",
                f"resolve:{c.provider}:{c.transaction_id}:{request.request_id}",
                {"provider": c.provider, "transaction_id": c.transaction_id, "note": note},
            )
        )
        await self._set_state(PaymentState.RESOLVED)
        return ConfirmationOutcome("resolved", self._order_id, None, list(self._cases))

    async def _audit(self, *entries: AuditInput) -> None:
        await workflow.execute_activity_method(
            ConfirmationActivities.write_audit,
            list(entries),
            start_to_close_timeout=SHORT_DB_CALL,
            retry_policy=DOWNSTREAM_RETRY,
        )

    async def _set_state(self, state: PaymentState, order_id: str | None = None) -> None:
        self._state = state
        updates = [PAYMENT_STATE.value_set(state.value)]
        if order_id is not None and order_id != self._order_id:
            self._order_id = order_id
            updates.append(ORDER_ID.value_set(order_id))
        workflow.upsert_search_attributes(updates)

    def _enqueue(self, action: str, request: AdminRequest) -> None:
        # A repeated signal (same request id) acts once.
        if request.request_id in self._seen_request_ids:
            return
        self._seen_request_ids.add(request.request_id)
        self._requests.append((action, request))

    @workflow.signal
    def attach(self, request: AdminRequest) -> None:
        """2b: an admin names the order this payment belongs to."""
        self._enqueue("attach", request)

    @workflow.signal
    def resolve(self, request: AdminRequest) -> None:
        """Closes the open cases with the admin's note (e.g. refunded outside paysaga)."""
        self._enqueue("resolve", request)

    @workflow.query
    def state(self) -> dict[str, Any]:
        return {
            "state": self._state.value,
            "order_id": self._order_id,
            "ticket_code": self._ticket_code,
            "cases": list(self._cases),
            "pending_requests": [asdict(r) | {"action": a} for a, r in self._requests],
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
