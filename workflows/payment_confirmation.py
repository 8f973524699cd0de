"""UC-35 as one saga: `payment-{provider}-{transaction_id}`.

Read `_advance` top to bottom and it is the use case: 2 validate, 3 idempotency, 4 store,
5 mark paid, 8 ticket, with 6 (the audit trail) written beside it; extensions 2a (mismatch),
2b (no order) and 3a (duplicates) are named where they happen. Money that cannot be applied is
parked here, with an open reconciliation case, until an admin `attach`es it to an order,
`refund`s or `resolve`s it. A refund goes through the gateway (`workflows.refund`), whose
workflow tells this one `refunded` once the money is back.

Failure paths (4a, 5a, 6a, 8a): each step names its policy where it is called, and one runner
(`workflows.steps`) retries it fast, then hands it to the server to retry slowly, without end,
while this workflow says `needs_reconciliation` and keeps a case open. Nothing is given up.

Bounded through an outage of any length: the server's slow retries add no history events, and
a run whose history passes HISTORY_BUDGET (retry floods, long parks) continues as new with its
one typed state, `ConfirmationState`, which is also what the `state` query answers.

Admin actions are decided here and only here (`ConfirmationState.may`): as updates, whose
validators refuse synchronously (the API's 409), and as signals of the same names for the
Temporal UI and CLI, where a refusal leaves an `admin.<action>.ignored` audit entry.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, replace
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import (
        CaseInput,
        CloseCasesInput,
        ConfirmationActivities,
        RefundInput,
        StoreInput,
        ValidateInput,
        Validation,
    )
    from domain import keys
    from domain.confirmation import (
        AdminAction,
        AdminDecision,
        AuditRecord,
        ConfirmationRun,
        ConfirmationState,
        Phase,
        QueuedRequest,
        order_paid_record,
    )
    from domain.payments import (
        NOT_PAYABLE,
        AdminRequest,
        CaseKind,
        ConfirmationOutcome,
        PaymentState,
        RecoveryTiming,
    )
    from workflows.steps import StepPolicy, StepRunner, unmendable

PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
TRANSACTION_ID = SearchAttributeKey.for_keyword("TransactionId")

# The server suggests continue-as-new at 4,096 events (its default); a run continues well
# before, so a burst of signals inside one workflow task cannot carry it past the hint, and a
# worker that must replay a run from its start (after a restart) replays a short one.
HISTORY_BUDGET = 1_000
AUDIT_FALLBACK = "AUDIT_FALLBACK"
REFUSED = "ActionRefused"
# An admin's `refund` of parked money asks the gateway through the refund workflow; before
# this patch it only recorded the decision (the histories recorded then replay unchanged).
REFUND_AT_GATEWAY = "refund-at-gateway"

# 6a: the audit trail gets a shorter first phase; then its entries go to the log, marked.
AUDIT = StepPolicy("audit", first_phase_cap=60.0, log_fallback=True)
# 4a and 5a: the steps whose escalation says `needs_reconciliation` and opens a case.
VALIDATE = StepPolicy("validate", case=CaseKind.STORE_FAILED)
STORE = StepPolicy("store", case=CaseKind.STORE_FAILED)
MARK_PAID = StepPolicy("mark_paid", case=CaseKind.STATUS_UPDATE_FAILED)
CASE_STEPS = (VALIDATE, STORE, MARK_PAID)


@workflow.defn(name="ConfirmPayment")
class ConfirmPaymentWorkflow:
    @workflow.init
    def __init__(self, inp: ConfirmationRun) -> None:
        self._inp = inp
        self._c = inp.confirmation
        self._s = inp.carried or ConfirmationState()
        self._steps = StepRunner(inp.recovery or RecoveryTiming(), self)
        self._case_tasks: dict[str, asyncio.Task[None]] = {}
        self._writing = 0  # how many pending audit entries the writer has in flight

    @workflow.run
    async def run(self, inp: ConfirmationRun) -> ConfirmationOutcome:
        s = self._s
        saga = asyncio.create_task(self._saga())
        # 6: the audit trail is written beside the saga, never in its way (6a).
        audit = asyncio.create_task(self._write_audit_trail())
        await workflow.wait_condition(lambda: saga.done() or self._history_full())
        if saga.done():
            saga.result()  # a bug surfaces here, failing the run visibly in the UI
            await workflow.wait_condition(lambda: audit.done() or self._history_full())
        if not audit.done():
            await self._continue_as_new(saga, audit)
        audit.result()
        if s.outcome == "paid":
            await self._set_state(PaymentState.COMPLETED)
        assert s.outcome is not None
        return ConfirmationOutcome(s.outcome, s.order_id, s.ticket_code, list(s.cases))

    async def _saga(self) -> None:
        s = self._s
        while s.phase != Phase.DONE:
            try:
                await self._advance()
            except (ActivityError, ApplicationError) as err:
                cause = unmendable(err)
                if cause is None:
                    raise
                # No retry mends it: the money is kept as a case an admin sees, never looped
                # on in silence. Not payable: the order was cancelled before the money came.
                kind = (
                    CaseKind.LATE_PAYMENT if cause.type == NOT_PAYABLE else CaseKind.UNPROCESSABLE
                )
                await self._park(Validation(kind, order_id=s.order_id, reason=cause.message))

    async def _advance(self) -> None:
        """One step of UC-35, from wherever the saga stands (a continued run resumes here)."""
        c, s = self._c, self._s
        if s.phase == Phase.VALIDATE:
            # 2: authenticity was checked at the edge; here the order, intent and amount.
            v = await self._steps.run(
                VALIDATE,  # 2 (4a while the database is down)
                ConfirmationActivities.validate_confirmation,
                ValidateInput(c, s.attach_to),
            )
            if v.outcome != "matched":
                # 2a (amount or currency mismatch), 2b (no matching order), or money for an
                # order already paid or cancelled: kept as a case, waiting for an admin.
                await self._park(v)
                return
            s.payment_id = v.payment_id
            await self._set_state(PaymentState.VALIDATED, v.order_id)
            s.phase = Phase.STORE
        elif s.phase == Phase.STORE:
            # 3a: the workflow id admits one run per payment; behind it the database keys
            # (provider, transaction_id) and one-paid-payment-per-order decide.
            # 4: store the payment (4a: waited out).
            if await self._steps.run(
                STORE,  # 4a
                ConfirmationActivities.store_payment,
                self._store_input(),
            ):
                self._drop_requests()
                await self._set_state(PaymentState.STORED)
                s.phase = Phase.MARK_PAID
            else:
                reason = "the order's payment was taken by another transaction"
                await self._park(Validation(CaseKind.ALREADY_PAID, s.order_id, reason=reason))
        elif s.phase == Phase.PARKED:
            await self._decide()
        elif s.phase == Phase.MARK_PAID:
            # 5: Paid/Confirmed, only once the payment row exists and only if the order still
            # awaits payment (5a: waited out, the order ends paid once).
            await self._steps.run(
                MARK_PAID,  # 5a
                ConfirmationActivities.mark_order_paid,
                self._store_input(),
            )
            await self._set_state(PaymentState.PAID)
            self._queue_audit(*self._confirmation_audit())
            if s.cases:
                await self._steps.record(
                    ConfirmationActivities.close_cases,
                    CloseCasesInput(
                        c.provider, c.transaction_id, f"attached to order {s.order_id}"
                    ),
                )
            s.phase = Phase.TICKET
        elif s.phase == Phase.TICKET:
            # 8: the ticket, retried on its own (8a): it never rolls back payment or status.
            assert s.order_id is not None
            s.ticket_code = await self._steps.run(
                StepPolicy("ticket"),  # 8a: no case; retried on its own
                ConfirmationActivities.issue_ticket,
                s.order_id,
            )
            s.outcome, s.phase = "paid", Phase.DONE

    def _store_input(self) -> StoreInput:
        s = self._s
        assert s.order_id is not None and s.payment_id is not None
        return StoreInput(self._c, s.order_id, s.payment_id)

    # -- bounded history ---------------------------------------------------------------------

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= HISTORY_BUDGET
            or info.is_continue_as_new_suggested()
        )

    async def _continue_as_new(self, *tasks: asyncio.Task[None]) -> None:
        """Stops what is in flight and continues as new with the state; the workflow id, and
        so every handle, stays. The state changes only once a step has completed, so the next
        run redoes the step that was running (every step is idempotent)."""
        s = self._s
        s.history_suggested = s.history_suggested or workflow.info().is_continue_as_new_suggested()
        self._steps.stop()
        pending = [*tasks, *self._case_tasks.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(replace(self._inp, carried=replace(s, runs=s.runs + 1)))

    # -- failures past their first phase (the runner's Escalation) -------------------------

    def is_escalated(self, policy: StepPolicy) -> bool:
        return policy.name in self._s.stuck

    async def escalated(self, policy: StepPolicy, failure: str) -> None:
        c, s = self._c, self._s
        if failure:
            s.stuck[policy.name] = failure
        if policy.log_fallback:
            self._log_audit_fallback()
        if policy.case is None:
            return
        if s.state != PaymentState.NEEDS_RECONCILIATION:
            s.resume_state = s.state
        await self._set_state(PaymentState.NEEDS_RECONCILIATION)
        if policy.case not in s.cases:
            s.cases.append(policy.case)
        # Beside the step, not before it: the database may be the thing that is down.
        case = Validation(policy.case, order_id=s.order_id, reason=s.stuck[policy.name])
        self._case_tasks[policy.name] = asyncio.create_task(
            self._steps.record(ConfirmationActivities.open_case, CaseInput(c, case))
        )

    async def recovered(self, policy: StepPolicy, resolution: str) -> None:
        c, s = self._c, self._s
        failure = s.stuck.pop(policy.name)
        if policy.case is None:
            return
        # The step just went through, so the database is back and the opening finishes too;
        # waiting for it keeps the order (opened, then resolved) and leaves nothing in flight.
        opening = self._case_tasks.pop(policy.name, None)
        if opening is not None:
            await opening
        # Keep the history: the case ends resolved, whether or not it could be opened.
        await self._steps.record(
            ConfirmationActivities.open_case,
            CaseInput(
                c,
                Validation(policy.case, order_id=s.order_id, reason=failure),
                resolution=resolution,
            ),
        )
        if s.resume_state is not None and not any(self.is_escalated(p) for p in CASE_STEPS):
            await self._set_state(s.resume_state)
            s.resume_state = None

    # -- 6: the audit trail ------------------------------------------------------------------

    def _queue_audit(self, *entries: AuditRecord) -> None:
        self._s.pending_audit.extend(entries)
        if AUDIT.name in self._s.stuck:
            self._log_audit_fallback()

    def _queue_audit_coalesced(self, entry: AuditRecord) -> None:
        """Repeatable requests (retry, refused ones) while the trail is behind: one entry with
        a count, so a flood cannot grow the state without bound."""
        pending = self._s.pending_audit
        for i in range(self._writing, len(pending)):  # not into the batch being written
            e = pending[i]
            if e.action == entry.action and e.actor == entry.actor:
                pending[i] = replace(
                    e, detail=e.detail | {"repeats": e.detail.get("repeats", 1) + 1}
                )
                return
        self._queue_audit(entry)

    async def _write_audit_trail(self) -> None:
        s = self._s
        while True:
            await workflow.wait_condition(lambda: bool(s.pending_audit) or s.phase == Phase.DONE)
            if not s.pending_audit:
                return
            batch = list(s.pending_audit)
            self._writing = len(batch)
            await self._steps.run(AUDIT, ConfirmationActivities.write_audit, batch)
            del s.pending_audit[: len(batch)]
            self._writing = 0
            written = {e.dedupe_key for e in batch}
            s.audit_logged = [k for k in s.audit_logged if k not in written]

    def _log_audit_fallback(self) -> None:
        """6a: entries the database refused go to the log, marked, once each; they stay queued."""
        s = self._s
        for entry in s.pending_audit:
            if entry.dedupe_key in s.audit_logged:
                continue
            s.audit_logged.append(entry.dedupe_key)
            workflow.logger.error(
                "%s %s", AUDIT_FALLBACK, json.dumps(asdict(entry), sort_keys=True, default=str)
            )

    def _confirmation_audit(self) -> tuple[AuditRecord, AuditRecord]:
        c, order_id = self._c, self._s.order_id
        assert order_id is not None
        source = {"provider": c.provider, "transaction_id": c.transaction_id}
        return (
            AuditRecord(
                order_id,
                f"gateway:{c.provider}",
                "payment.confirmed",
                keys.payment_confirmed(c.provider, c.transaction_id),
                source
                | {
                    "amount": c.amount,
                    "currency": c.currency,
                    "event_id": c.event_id,
                    "event_type": c.event_type,
                },
            ),
            order_paid_record(order_id, c.provider, c.transaction_id, "paysaga"),
        )

    # -- parked money and admin decisions ----------------------------------------------------

    async def _park(self, v: Validation) -> None:
        s = self._s
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
        s.outcome, s.phase = "resolved", Phase.DONE

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
        s.outcome, s.phase = "refunded", Phase.DONE

    async def _settle_refunded(self, note: str) -> None:
        """The refund workflow sent the parked money back: the cases close, and this ends."""
        c, s = self._c, self._s
        await self._steps.record(
            ConfirmationActivities.close_cases,
            CloseCasesInput(c.provider, c.transaction_id, note),
        )
        await self._set_state(PaymentState.REFUNDED)
        s.outcome, s.phase = "refunded", Phase.DONE

    async def _set_state(self, state: PaymentState, order_id: str | None = None) -> None:
        s = self._s
        s.state = state
        updates = [PAYMENT_STATE.value_set(state.value)]
        if order_id is not None and order_id != s.order_id:
            s.order_id = order_id
            updates.append(ORDER_ID.value_set(order_id))
        workflow.upsert_search_attributes(updates)

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

    @workflow.signal(name="retry")
    def retry(self, request: AdminRequest) -> None:
        """Try the failing step now (4a/5a/6a/8a), or validate a parked payment afresh."""
        self._signalled(AdminAction.RETRY, request)

    @workflow.signal(name="attach")
    def attach(self, request: AdminRequest) -> None:
        """2b: an admin names the order this payment belongs to."""
        self._signalled(AdminAction.ATTACH, request)

    @workflow.signal(name="refund")
    def refund(self, request: AdminRequest) -> None:
        """Parked money goes back to the payer; the cases close with the reason."""
        self._signalled(AdminAction.REFUND, request)

    @workflow.signal(name="resolve")
    def resolve(self, request: AdminRequest) -> None:
        """Closes the open cases with the admin's note (e.g. settled outside paysaga)."""
        self._signalled(AdminAction.RESOLVE, request)

    @workflow.signal(name="refunded")
    def refunded(self, note: str) -> None:
        """From the refund workflow (not an admin action): the money went back. Kept until
        the money is parked, so a refund quicker than the park is not lost."""
        if self._s.phase != Phase.DONE and self._s.refunded_note is None:
            self._s.refunded_note = note

    # Updates of the same names, for the API: a refusal is the validator's, synchronous.

    @workflow.update(name="retry")
    def request_retry(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.RETRY, request)

    @request_retry.validator
    def _check_retry(self, request: AdminRequest) -> None:
        self._check(AdminAction.RETRY, request)

    @workflow.update(name="attach")
    def request_attach(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.ATTACH, request)

    @request_attach.validator
    def _check_attach(self, request: AdminRequest) -> None:
        self._check(AdminAction.ATTACH, request)

    @workflow.update(name="refund")
    def request_refund(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.REFUND, request)

    @request_refund.validator
    def _check_refund(self, request: AdminRequest) -> None:
        self._check(AdminAction.REFUND, request)

    @workflow.update(name="resolve")
    def request_resolve(self, request: AdminRequest) -> AdminDecision:
        return self._act(AdminAction.RESOLVE, request)

    @request_resolve.validator
    def _check_resolve(self, request: AdminRequest) -> None:
        self._check(AdminAction.RESOLVE, request)

    @workflow.query
    def state(self) -> ConfirmationState:
        return self._s


UPDATES = {
    AdminAction.RETRY: ConfirmPaymentWorkflow.request_retry,
    AdminAction.ATTACH: ConfirmPaymentWorkflow.request_attach,
    AdminAction.REFUND: ConfirmPaymentWorkflow.request_refund,
    AdminAction.RESOLVE: ConfirmPaymentWorkflow.request_resolve,
}
