"""UC-35 as one saga: `payment-{provider}-{transaction_id}`.

Read `_advance` top to bottom and it is the use case: 2 validate (2c: an authorization is
captured, `workflows.confirmation_capture`), 3 idempotency, 4 store, 5 mark paid (then, for an
order that needs it, SEQ-BP-002's vendor acceptance, `workflows.confirmation_vendor`), 8 ticket,
with 6 (the audit trail, `workflows.confirmation_audit`) written beside it; extensions 2a
(mismatch), 2b (no order) and 3a (duplicates) are named where they happen.
Money that cannot be applied is parked here, with an open reconciliation case, until an admin
`attach`es it to an order, `refund`s or `resolve`s it (the requests and their rules:
`workflows.confirmation_requests`). A refund goes through the gateway (`workflows.refund`),
whose workflow tells this one `refunded` once the money is back.

Failure paths (4a, 5a, 6a, 8a): each step names its policy where it is called, and one runner
(`workflows.steps`) retries it fast, then hands it to the server to retry slowly, without end,
while this workflow says `needs_reconciliation` and keeps a case open. Nothing is given up.

Bounded through an outage of any length: the server's slow retries add no history events, and
a run whose history passes HISTORY_BUDGET (retry floods, long parks) continues as new with its
one typed state, `ConfirmationState`, which is also what the `state` query answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import ConfirmationActivities
    from activities.confirmation_inputs import (
        CaseInput,
        CloseCasesInput,
        MarkedPaid,
        MarkPaidInput,
        StoreInput,
        ValidateInput,
        Validation,
    )
    from domain.confirmation import (
        ConfirmationRun,
        ConfirmationState,
        Phase,
    )
    from domain.payments import (
        CAPTURE_REFUSED,
        NOT_PAYABLE,
        CaseKind,
        ConfirmationOutcome,
        PaymentState,
        RecoveryTiming,
    )
    from domain.workflow_names import CONFIRM_PAYMENT, ORDER_ID, PAYMENT_STATE, STATE
    from workflows.confirmation_capture import CaptureStep
    from workflows.confirmation_parked import ParkedMoney
    from workflows.confirmation_requests import AdminRequests
    from workflows.confirmation_vendor import VendorAcceptance
    from workflows.steps import StepPolicy, StepRunner, unmendable

# The server suggests continue-as-new at 4,096 events (its default); a run continues well
# before, so a burst of signals inside one workflow task cannot carry it past the hint, and a
# worker that must replay a run from its start (after a restart) replays a short one.
HISTORY_BUDGET = 1_000
# The lean happy path (issue 24, `ConfirmationRun.lean`): steps 2 to 8 in one local activity
# where the database takes them together, and `PaymentState` written once per workflow task
# instead of once per step (the states in between were never visible: the task completes
# them all at once).

# 4a and 5a: the steps whose escalation says `needs_reconciliation` and opens a case.
VALIDATE = StepPolicy("validate", case=CaseKind.STORE_FAILED)
STORE = StepPolicy("store", case=CaseKind.STORE_FAILED)
MARK_PAID = StepPolicy("mark_paid", case=CaseKind.STATUS_UPDATE_FAILED)
CASE_STEPS = (VALIDATE, STORE, MARK_PAID)


@workflow.defn(name=CONFIRM_PAYMENT)
class ConfirmPaymentWorkflow(AdminRequests, CaptureStep, ParkedMoney, VendorAcceptance):
    @workflow.init
    def __init__(self, inp: ConfirmationRun) -> None:
        self._inp = inp
        self._c = inp.confirmation
        self._s = inp.carried or ConfirmationState()
        self._steps = StepRunner(inp.recovery or RecoveryTiming(), self)
        self._case_tasks: dict[str, asyncio.Task[None]] = {}
        self._writing = 0  # how many pending audit entries the writer has in flight
        self._unwritten: list[SearchAttributeUpdate[str]] = []  # `_set_state(..., lean=True)`
        self._lean = inp.lean  # a continue-as-new carries it with the input

    @workflow.run
    async def run(self, inp: ConfirmationRun) -> ConfirmationOutcome:
        s = self._s
        saga = asyncio.create_task(self._saga())
        # 6: the audit trail is written beside the saga, never in its way (6a).
        audit = asyncio.create_task(self._write_audit_trail())
        await workflow.wait_condition(lambda: saga.done() or self._history_full())
        if saga.done():
            saga.result()  # a bug surfaces here, failing the run visibly in the UI
            if s.pending_audit:  # the trail is behind: the saga's last state shows meanwhile
                self.leaving_task()
            await workflow.wait_condition(lambda: audit.done() or self._history_full())
        if not audit.done():
            await self._continue_as_new(saga, audit)
        audit.result()
        if s.outcome == PaymentState.PAID:
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
                kind = {
                    NOT_PAYABLE: CaseKind.LATE_PAYMENT,
                    CAPTURE_REFUSED: CaseKind.CAPTURE_REFUSED,  # 2c: the order stays unpaid
                }.get(cause.type or "", CaseKind.UNPROCESSABLE)
                await self._park(Validation(kind, order_id=s.order_id, reason=cause.message))

    async def _advance(self) -> None:
        """One step of UC-35, from wherever the saga stands (a continued run resumes here)."""
        phase = self._s.phase
        if phase == Phase.VALIDATE:
            await self._validate()  # 2, 2a, 2b
        elif phase == Phase.STORE:
            await self._store()  # 3a, 4, 4a
        elif phase == Phase.PARKED:
            await self._decide()
        elif phase == Phase.MARK_PAID:
            await self._mark_paid()  # 5, 5a
        elif phase == Phase.VENDOR:
            await self._await_vendor()  # SEQ-BP-002: the vendor accepts, or not
        elif phase == Phase.TICKET:
            await self._ticket()  # 8, 8a

    async def _validate(self) -> None:
        c, s = self._c, self._s
        if not c.needs_capture and self._lean:
            if await self._validate_and_store():
                return
        # 2: authenticity was checked at the edge; here the order, intent and amount.
        v = await self._steps.run(
            VALIDATE,  # 2 (4a while the database is down)
            ConfirmationActivities.validate_confirmation,
            ValidateInput(c, s.attach_to),
        )
        if v.outcome != "matched":
            # 2a (amount or currency mismatch), 2b (no matching order), or money for an
            # order already paid or cancelled: kept as a case, waiting for an admin. An
            # authorization for such an order is left uncaptured, on the audit trail too.
            await self._park(v)
            return
        s.payment_id, s.accept_seconds = v.payment_id, v.accept_seconds
        await self._set_state(PaymentState.VALIDATED, v.order_id, lean=True)
        await self._capture()  # 2c: an authorization is captured before it is stored
        s.phase = Phase.STORE

    async def _validate_and_store(self) -> bool:
        """2, 4 and 5 (with 6 and 8) in one local step where nothing comes between them (no
        capture), with the same outcomes as the steps one at a time. False when the database
        did not take it: then the steps run one at a time, each failing its own way (4a, 5a),
        so a case opened for a payment that cannot be stored names its order."""
        c, s = self._c, self._s
        local = await self._steps.locally(
            ConfirmationActivities.confirm_at_once, ValidateInput(c, s.attach_to)
        )
        if local is None:
            return False
        (done,) = local
        v = done.validation
        if done.stored is None:  # 2a, 2b, or money for an order paid or cancelled already
            await self._park(v)
            return True
        s.payment_id, s.accept_seconds = v.payment_id, v.accept_seconds
        await self._set_state(PaymentState.VALIDATED, v.order_id, lean=True)
        await self._stored(done.stored)
        if done.marked is not None and s.phase == Phase.MARK_PAID:
            await self._marked(done.marked)  # else step 5 on its own decides (late: parked)
        return True

    async def _store(self) -> None:
        # 3a: the workflow id admits one run per payment; behind it the database keys
        # (provider, transaction_id) and one-paid-payment-per-order decide.
        # 4: store the payment (4a: waited out).
        stored = await self._steps.run(
            STORE,  # 4a
            ConfirmationActivities.store_payment,
            self._store_input(),
        )
        await self._stored(stored)

    async def _stored(self, stored: bool) -> None:
        s = self._s
        if stored:
            self._drop_requests()
            await self._set_state(PaymentState.STORED, lean=True)
            s.phase = Phase.MARK_PAID
        else:
            reason = "the order's payment was taken by another transaction"
            await self._park(Validation(CaseKind.ALREADY_PAID, s.order_id, reason=reason))

    async def _mark_paid(self) -> None:
        s = self._s
        # 5: Paid/Confirmed, only once the payment row exists and only if the order still
        # awaits payment (5a: waited out, the order ends paid once). With it, where the
        # database takes them, the audit entries (6) and the ticket (8); whichever it refuses
        # (6a, 8a) is done below on that step's own retries, never holding 5 back.
        done = MarkedPaid(changed=False, audited=False, ticket_code=None)
        if self._lean:
            done = await self._steps.run(
                MARK_PAID,  # 5a
                ConfirmationActivities.mark_order_paid_and_ticket,
                MarkPaidInput(
                    self._store_input(),
                    list(self._confirmation_audit()),
                    ticket=s.accept_seconds is None,
                ),
            )
        else:
            await self._steps.run(
                MARK_PAID,  # 5a
                ConfirmationActivities.mark_order_paid,
                self._store_input(),
            )
        await self._marked(done)

    async def _marked(self, done: MarkedPaid) -> None:
        """After step 5: what of 6 and 8 went with it, and what follows."""
        c, s = self._c, self._s
        await self._set_state(PaymentState.PAID, lean=True)
        if not done.audited:
            self._queue_audit(*self._confirmation_audit())
        if s.cases:
            await self._steps.record(
                ConfirmationActivities.close_cases,
                CloseCasesInput(c.provider, c.transaction_id, f"attached to order {s.order_id}"),
            )
        if self._waits_for_vendor():
            s.phase = Phase.VENDOR  # its ticket once accepted (none was issued with step 5)
        elif done.ticket_code is not None:
            s.ticket_code = done.ticket_code
            s.outcome, s.phase = PaymentState.PAID, Phase.DONE
        else:
            s.phase = Phase.TICKET

    async def _ticket(self) -> None:
        s = self._s
        # 8: the ticket, retried on its own (8a): it never rolls back payment or status.
        assert s.order_id is not None
        s.ticket_code = await self._steps.run(
            StepPolicy("ticket"),  # 8a: no case; retried on its own
            ConfirmationActivities.issue_ticket,
            s.order_id,
        )
        s.outcome, s.phase = PaymentState.PAID, Phase.DONE

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
        self.leaving_task()  # the next run starts from the attributes this one wrote
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

    async def _set_state(
        self, state: PaymentState, order_id: str | None = None, *, lean: bool = False
    ) -> None:
        """The state, and the search attributes operators filter on. `lean`: a state the
        happy path passes through within one workflow task is written with the next write,
        or before the workflow next waits on the server (`leaving_task`), not on its own."""
        s = self._s
        s.state = state
        updates = [PAYMENT_STATE.value_set(state.value)]
        if order_id is not None and order_id != s.order_id:
            s.order_id = order_id
            updates.append(ORDER_ID.value_set(order_id))
        names = {u.key.name for u in updates}
        self._unwritten = [u for u in self._unwritten if u.key.name not in names] + updates
        if not (lean and self._lean):
            self.leaving_task()

    def leaving_task(self) -> None:
        """Writes the attributes held back by a lean `_set_state`: before a step goes to
        the server (the runner calls this), before continuing as new, and with any write."""
        if self._unwritten:
            workflow.upsert_search_attributes(self._unwritten)
            self._unwritten = []

    @workflow.query(name=STATE)
    def state(self) -> ConfirmationState:
        return self._s
