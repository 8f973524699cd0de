"""SEQ-BP-002's last step in the confirmation: an order that needs its vendor's acceptance
waits for it once paid, visibly (`OrderState = "pending_vendor_acceptance"` in the Temporal
UI), and gets its ticket only once accepted.

The decision is not made here: the vendor's route and the window keeper decide it in the
database (`db.fulfilment`, one conditional update), then tell this workflow with the
`fulfilment` signal, best effort. So the wait is durable without trusting the signal: if none
came by the window's end plus `GRACE`, the workflow reads the order's row (`fulfilment_of`),
and reads it again later while the keeper has not closed the window yet.

Orders that need no acceptance (every order before issue 28) pay nothing for this: whether an
order needs it comes with step 2's answer (`accept_seconds`), which no history recorded before
carries, so those replay unchanged without a patch. No `workflow.patched` here on purpose: one
asked after an activity's result broke replay under load on main (patches are decided once, at
the start of `run`). A mixin of `ConfirmPaymentWorkflow`, which owns the state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import ConfirmationActivities
    from domain.confirmation import ConfirmationState, Phase
    from domain.fulfilment import VendorAnswer
    from domain.payments import PaymentState
    from domain.statuses import FulfilmentStatus
    from domain.workflow_names import FULFILMENT, ORDER_STATE
    from workflows.steps import StepRunner

# After the window's end, how long the keeper gets to close it before the row is read.
GRACE = timedelta(minutes=1)
# While the row still says pending past that (the keeper behind or down): read again, at
# growing intervals up to the longest.
RECHECK = timedelta(minutes=1)
LONGEST_RECHECK = timedelta(minutes=15)
DECIDED = (FulfilmentStatus.ACCEPTED, FulfilmentStatus.REJECTED)


class VendorAcceptance:
    _s: ConfirmationState
    _steps: StepRunner

    def leaving_task(self) -> None:
        """The workflow's (`ConfirmPaymentWorkflow.leaving_task`)."""
        raise NotImplementedError

    @workflow.signal(name=FULFILMENT)
    def fulfilment(self, answer: VendorAnswer) -> None:
        """The vendor's or the window's decision, after it committed: the first one counts
        (the database let only one of them happen)."""
        if answer.fulfilment in DECIDED and self._s.fulfilment is None:
            self._s.fulfilment = answer.fulfilment

    def _waits_for_vendor(self) -> bool:
        """Asked once the order is paid: step 2 said the order has an acceptance window."""
        return self._s.accept_seconds is not None

    async def _await_vendor(self) -> None:
        s = self._s
        assert s.order_id is not None and s.accept_seconds is not None
        if s.accept_by is None:  # first time here (a continued run carries it)
            s.accept_by = (workflow.now() + timedelta(seconds=s.accept_seconds)).isoformat()
            self._order_state(FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE)
        # The wait may be long: `PaymentState` (paid), held back by the lean step 5 for the
        # end of the task, is written before it, so the UI shows it meanwhile.
        self.leaving_task()
        checks = 0
        while s.fulfilment is None:
            until = datetime.fromisoformat(s.accept_by) + GRACE
            wait = max((until - workflow.now()).total_seconds(), 1.0)
            try:
                await workflow.wait_condition(
                    lambda: s.fulfilment is not None,
                    timeout=wait,
                    timeout_summary="vendor acceptance",
                )
                break
            except TimeoutError:
                pass
            seen = await self._steps.record(ConfirmationActivities.fulfilment_of, s.order_id)
            if seen.fulfilment is None:  # not waiting after all: an ordinary order
                s.phase = Phase.TICKET
                return
            if s.fulfilment is None and seen.fulfilment in DECIDED:
                s.fulfilment = seen.fulfilment
            elif s.fulfilment is None:
                later = min(RECHECK * 2**checks, LONGEST_RECHECK)
                checks += 1
                s.accept_by = max(
                    datetime.fromisoformat(seen.accept_by or s.accept_by),
                    workflow.now() + later - GRACE,
                ).isoformat()
        assert s.fulfilment is not None
        decided = FulfilmentStatus(s.fulfilment)
        self._order_state(decided)
        if decided == FulfilmentStatus.ACCEPTED:
            s.phase = Phase.TICKET  # the ticket, and its mail (`VendorAccepted`), now
        else:
            # Rejected: the payment stays applied to the order, whose full refund the
            # rejection started (`refund-{provider}-{tx}`); no ticket for it.
            s.outcome, s.phase = PaymentState.PAID, Phase.DONE

    def _order_state(self, state: FulfilmentStatus) -> None:
        workflow.upsert_search_attributes([ORDER_STATE.value_set(state.value)])
