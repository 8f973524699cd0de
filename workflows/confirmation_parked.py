"""Money the saga cannot apply, parked: an open reconciliation case and the confirmation
waiting (`needs_reconciliation`, `unmatched`, `amount_mismatch`) until an admin decides. An
`attach` or `retry` sends it back to step 2, a `resolve` closes it, a `refund` asks the
gateway through the refund workflow (`workflows.refund`), which says `refunded` once the money
is back. A mixin of `ConfirmPaymentWorkflow` (`workflows.payment_confirmation`), which owns
the state; the requests and their rules are `workflows.confirmation_requests`.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import ConfirmationActivities
    from activities.confirmation_inputs import (
        CaseInput,
        CloseCasesInput,
        RefundInput,
        Validation,
    )
    from domain import keys
    from domain.confirmation import AdminAction, AuditRecord, Phase
    from domain.payments import AdminRequest, CaseKind, PaymentState
    from workflows.confirmation_audit import AuditTrail

# An admin's `refund` of parked money asks the gateway through the refund workflow; before
# this patch it only recorded the decision (the histories recorded then replay unchanged).
REFUND_AT_GATEWAY = "refund-at-gateway"


class ParkedMoney(AuditTrail):
    async def _set_state(
        self, state: PaymentState, order_id: str | None = None, *, lean: bool = False
    ) -> None:
        """The workflow's (`ConfirmPaymentWorkflow._set_state`)."""
        raise NotImplementedError

    def _audit_not_captured(self, v: Validation) -> None:
        """The capture step's (`CaptureStep._audit_not_captured`)."""
        raise NotImplementedError

    def _drop_requests(self) -> None:
        """The requests' (`AdminRequests._drop_requests`)."""
        raise NotImplementedError

    async def _park(self, v: Validation) -> None:
        s = self._s
        self._audit_not_captured(v)
        await self._steps.record(ConfirmationActivities.open_case, CaseInput(self._c, v))
        if v.outcome not in s.cases:
            s.cases.append(v.outcome)
        parked_as = {
            CaseKind.UNMATCHED: PaymentState.UNMATCHED,
            CaseKind.AMOUNT_MISMATCH: PaymentState.AMOUNT_MISMATCH,
        }.get(CaseKind(v.outcome), PaymentState.NEEDS_RECONCILIATION)
        await self._set_state(parked_as, v.order_id)
        s.parked_as, s.phase = v.outcome, Phase.PARKED

    async def _decide(self) -> None:
        """Parked: the next admin request decides what happens to the money. It stays queued
        until it has acted, so a continue-as-new meanwhile carries it into the next run."""
        s = self._s
        await workflow.wait_condition(
            lambda: bool(s.pending_requests) or s.refunded_note is not None
        )
        if s.refunded_note is not None:
            await self._settle_refunded(s.refunded_note)
            self._drop_requests()
            return
        queued = s.pending_requests[0]
        request = queued.request
        if queued.action == AdminAction.REFUND:
            await self._refund(request)
        elif queued.action == AdminAction.RESOLVE:
            await self._resolve(request)
        else:
            # attach: validate against the admin's order; retry: validate afresh (the order
            # may have been created, or fixed, since).
            s.attach_to = request.order_id if queued.action == AdminAction.ATTACH else None
            s.phase = Phase.VALIDATE
        s.pending_requests.remove(queued)
        if s.phase == Phase.DONE:
            self._drop_requests()

    async def _resolve(self, request: AdminRequest) -> None:
        c, s = self._c, self._s
        await self._steps.record(
            ConfirmationActivities.close_cases,
            CloseCasesInput(
                c.provider, c.transaction_id, f"resolved by {request.admin}: {request.note or ''}"
            ),
        )
        await self._set_state(PaymentState.RESOLVED)
        s.outcome, s.phase = PaymentState.RESOLVED, Phase.DONE

    async def _refund(self, request: AdminRequest) -> None:
        c, s = self._c, self._s
        reason = request.reason or ""
        if workflow.patched(REFUND_AT_GATEWAY):
            # The money goes back through the gateway: the refund workflow asks it (online)
            # or waits for the operator's refund notice (offline). This stays parked until
            # that workflow says `refunded`; a failed refund opens a `refund_failed` case.
            await self._steps.record(
                ConfirmationActivities.ask_refund,
                RefundInput(c, s.order_id, request.admin, reason),
            )
            s.refund_asked = True
            await self._set_state(PaymentState.REFUND_PENDING)
            return
        reference = await self._steps.record(
            ConfirmationActivities.record_refund,
            RefundInput(c, s.order_id, request.admin, reason),
        )
        self._queue_audit(
            AuditRecord(
                s.order_id,
                request.admin,
                "payment.refunded",
                keys.payment_refunded(c.provider, c.transaction_id),
                {
                    "provider": c.provider,
                    "transaction_id": c.transaction_id,
                    "amount": c.amount,
                    "currency": c.currency,
                    "reason": reason,
                    "refund_reference": reference,
                },
            )
        )
        await self._set_state(PaymentState.REFUNDED)
        s.outcome, s.phase = PaymentState.REFUNDED, Phase.DONE

    async def _settle_refunded(self, note: str) -> None:
        """The refund workflow sent the parked money back: the cases close, and this ends."""
        c, s = self._c, self._s
        await self._steps.record(
            ConfirmationActivities.close_cases,
            CloseCasesInput(c.provider, c.transaction_id, note),
        )
        await self._set_state(PaymentState.REFUNDED)
        s.outcome, s.phase = PaymentState.REFUNDED, Phase.DONE
