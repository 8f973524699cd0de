"""The confirmation's admin requests: `retry`, `attach`, `refund` and `resolve`, each as an
update (for the API: the validator's refusal is synchronous, a 409) and as a signal of the same
name (for the Temporal UI and CLI: a refusal leaves an `admin.<action>.ignored` audit entry).

What an action may do is decided here and only here (`ConfirmationState.may`); a request that
may act is queued in the state, and the saga (`workflows.payment_confirmation`) carries it out.
A mixin of `ConfirmPaymentWorkflow`, which registers these handlers under the same names.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import keys
    from domain.confirmation import AdminAction, AdminDecision, AuditRecord, Phase, QueuedRequest
    from domain.payments import AdminRequest
    from domain.workflow_names import REFUNDED, REFUSED, UPDATES
    from workflows.confirmation_audit import AuditTrail


class AdminRequests(AuditTrail):
    def _refusal(self, action: AdminAction, request: AdminRequest) -> str | None:
        if problem := request.problem():
            return problem
        if action != AdminAction.RETRY and self._s.seen(request.request_id):
            return None  # a repeat is answered with what the first one did, not refused
        return self._s.may(action)

    def _act(self, action: AdminAction, request: AdminRequest) -> AdminDecision:
        """An admin request that may act. `retry` is harmless to repeat and keeps no id;
        `attach`, `refund` and `resolve` act once per request id."""
        s = self._s
        if action != AdminAction.RETRY:
            if s.seen(request.request_id):
                return self._decision(action, request, acted=False)
            s.remember(request.request_id)
        if action == AdminAction.RETRY and s.stuck:
            self._steps.nudge()  # every escalated step tries again now
        queued_retry = any(q.action == AdminAction.RETRY for q in s.pending_requests)
        if s.parked and not (action == AdminAction.RETRY and queued_retry):
            s.pending_requests.append(QueuedRequest(action, request))  # a retry queues once
        self._audit_request(action, request)
        return self._decision(action, request, acted=True)

    def _decision(self, action: AdminAction, request: AdminRequest, acted: bool) -> AdminDecision:
        wf = workflow.info().workflow_id
        return AdminDecision(wf, action, request.request_id, self._s.state, acted)

    def _signalled(self, action: AdminAction, request: AdminRequest) -> None:
        refusal = self._refusal(action, request)
        if refusal is None:
            self._act(action, request)
        elif request.problem():  # not even recordable in the audit trail: logged, dropped
            workflow.logger.warning("%s signal refused: %s", action, refusal)
        else:
            self._audit_request(action, request, refusal)

    def _check(self, action: AdminAction, request: AdminRequest) -> None:
        refusal = self._refusal(action, request)
        if refusal is not None:
            raise ApplicationError(refusal, type=REFUSED, non_retryable=True)

    def _drop_requests(self) -> None:
        """The money is applied or settled: queued requests can no longer act."""
        s = self._s
        for queued in s.pending_requests:
            self._audit_request(queued.action, queued.request, f"the payment is {s.state}")
        s.pending_requests.clear()

    def _audit_request(
        self, action: AdminAction, request: AdminRequest, refusal: str | None = None
    ) -> None:
        c, s = self._c, self._s
        name = f"admin.{action}" + (".ignored" if refusal else "")
        detail: dict[str, Any] = {
            "provider": c.provider,
            "transaction_id": c.transaction_id,
            "state": s.state.value,
        }
        detail |= {k: v for k, v in asdict(request).items() if v is not None and k != "admin"}
        if refusal:
            detail["refused"] = refusal
        entry = AuditRecord(
            request.order_id or s.order_id,
            request.admin,
            name,
            keys.admin_request(name, c.provider, c.transaction_id, request.request_id),
            detail,
        )
        if action == AdminAction.RETRY or refusal:
            self._queue_audit_coalesced(entry)
        else:
            self._queue_audit(entry)

    # Signals, for the Temporal UI and CLI (payload `{request_id, admin, ...}`).

    @workflow.signal(name=UPDATES[AdminAction.RETRY])
    def retry(self, request: AdminRequest) -> None:
        """Try the failing step now (4a/5a/6a/8a), or validate a parked payment afresh."""
        self._signalled(AdminAction.RETRY, request)

    @workflow.signal(name=UPDATES[AdminAction.ATTACH])
    def attach(self, request: AdminRequest) -> None:
        """2b: an admin names the order this payment belongs to."""
        self._signalled(AdminAction.ATTACH, request)

    @workflow.signal(name=UPDATES[AdminAction.REFUND])
    def refund(self, request: AdminRequest) -> None:
        """Parked money goes back to the payer; the cases close with the reason."""
        self._signalled(AdminAction.REFUND, request)

    @workflow.signal(name=UPDATES[AdminAction.RESOLVE])
    def resolve(self, request: AdminRequest) -> None:
        """Closes the open cases with the admin's note (e.g. settled outside paysaga)."""
        self._signalled(AdminAction.RESOLVE, request)

    @workflow.signal(name=REFUNDED)
    def refunded(self, note: str) -> None:
        """From the refund workflow (not an admin action): the money went back. Kept until
        the money is parked, so a refund quicker than the park is not lost."""
        if self._s.phase != Phase.DONE and self._s.refunded_note is None:
            self._s.refunded_note = note

    # Updates of the same names, for the API: a refusal is the validator's, synchronous.

    @workflow.update(name=UPDATES[AdminAction.RETRY])
    def request_retry(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.RETRY, request)

    @request_retry.validator
    def _check_retry(self, request: AdminRequest) -> None:
        self._check(AdminAction.RETRY, request)

    @workflow.update(name=UPDATES[AdminAction.ATTACH])
    def request_attach(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.ATTACH, request)

    @request_attach.validator
    def _check_attach(self, request: AdminRequest) -> None:
        self._check(AdminAction.ATTACH, request)

    @workflow.update(name=UPDATES[AdminAction.REFUND])
    def request_refund(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.REFUND, request)

    @request_refund.validator
    def _check_refund(self, request: AdminRequest) -> None:
        self._check(AdminAction.REFUND, request)

    @workflow.update(name=UPDATES[AdminAction.RESOLVE])
    def request_resolve(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.RESOLVE, request)

    @request_resolve.validator
    def _check_resolve(self, request: AdminRequest) -> None:
        self._check(AdminAction.RESOLVE, request)
