"""UC-35 step 2c, the capture: an authorization (Razorpay `payment.authorized`, or a checkout
return for an authorized payment) that step 2 matched to an order awaiting payment is
captured through the gateway's API, and only then stored (4) and the order marked paid (5).

One activity with its own retry policy: a gateway that is down or rate limited is waited
out (an authorization stays capturable for days), a refusal is not retried and parks the
confirmation with a `capture_refused` case, the order left unpaid. An authorization step 2
did not match (a cancelled or expired order, a wrong amount, no order) is never captured:
it is parked with an `authorization_uncaptured` case, and the gateway voids it. Each outcome
has its audit entry. A mixin of `ConfirmPaymentWorkflow`, which owns the state.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.capture import CaptureActivities
    from activities.confirmation_inputs import Validation
    from domain.confirmation import AuditRecord
    from domain.payments import CAPTURE_REFUSED, CaseKind
    from workflows.confirmation_audit import AuditTrail

# The API call retries a server error itself (about 30 s at worst); the server then retries
# the activity, at most a minute apart, for as long as it takes.
CAPTURE_TIMEOUT = timedelta(seconds=45)
CAPTURE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=[CAPTURE_REFUSED],
)
AUDITED = {
    CaseKind.UNCAPTURED: "payment.left_uncaptured",
    CaseKind.CAPTURE_REFUSED: "payment.capture_refused",
}


class CaptureStep(AuditTrail):
    def leaving_task(self) -> None:
        """The workflow's (`ConfirmPaymentWorkflow.leaving_task`)."""
        raise NotImplementedError

    async def _capture(self) -> None:
        """2c: captures the authorization, once (a capture asked again after it went through
        is "already captured", which the API adapter counts as done)."""
        c, s = self._c, self._s
        if not c.needs_capture or s.captured:
            return
        self.leaving_task()
        await workflow.execute_activity_method(
            CaptureActivities.capture_payment,
            c,
            start_to_close_timeout=CAPTURE_TIMEOUT,
            retry_policy=CAPTURE_RETRY,
        )
        s.captured = True
        self._queue_audit(self._capture_record("payment.captured", {}))

    def _audit_not_captured(self, v: Validation) -> None:
        """An authorization left uncaptured, or whose capture was refused: on the order's
        audit trail (or the payment's, without an order), where an operator sees it."""
        action = AUDITED.get(CaseKind(v.outcome)) if v.outcome in AUDITED else None
        if action is not None:
            self._queue_audit(self._capture_record(action, {"reason": v.reason}, v.order_id))

    def _capture_record(
        self, action: str, detail: dict[str, object], order_id: str | None = None
    ) -> AuditRecord:
        c = self._c
        return AuditRecord(
            order_id or self._s.order_id,
            "paysaga",
            action,
            f"{action}:{c.provider}:{c.transaction_id}",
            {
                "provider": c.provider,
                "transaction_id": c.transaction_id,
                "amount": c.amount,
                "currency": c.currency,
                "event_type": c.event_type,
            }
            | detail,
        )
