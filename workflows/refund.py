"""`refund-{provider}-{transaction_id}`: one payment's refund, from the request to the
gateway's answer.

Started by `POST /orders/{id}/refund`, by a parked confirmation (an admin's `refund` of
unmatched, mismatched or late money, or a late payment by itself), or by the gateway's own
refund notice when an operator refunded in its dashboard (signal-with-start). Parked money,
once back, is settled: its confirmation is told `refunded`.

Online mode (a gateway with API keys): the gateway is asked to refund, and its answer or
its refund webhook, whichever comes first, finishes it. Offline mode: the operator refunds
in the gateway's dashboard, and the refund webhook (`refund.processed`, `charge.refunded`,
Standard `refund.succeeded` / `refund.failed`) is the answer, delivered as the
`gateway_answer` signal. Applying it is one guarded transaction
(`db.refunds.finish_refund`), so a repeated notice changes nothing.

Never left waiting unseen: without an answer for `ANSWER_WAIT` a `refund_failed` case is
opened, and the workflow goes on waiting for the gateway. Bounded: a signal, a timer, an
activity or two.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from domain.payments import LATE_PAYMENT, RefundAnswer, RefundNotice, RefundRun
    from domain.statuses import RefundStatus
    from domain.workflow_names import ANSWERS, GATEWAY_ANSWER, REFUND

ANSWER_WAIT = timedelta(days=7)
# The database may be down when the answer comes: retried by the server until it goes in.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
STEP_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=REFUND)
class RefundWorkflow:
    def __init__(self) -> None:
        self._answers: list[RefundNotice] = []

    @workflow.signal(name=GATEWAY_ANSWER)
    def gateway_answer(self, notice: RefundNotice) -> None:
        self._answers.append(notice)

    @workflow.query(name=ANSWERS)
    def answers(self) -> list[RefundNotice]:
        return list(self._answers)

    @workflow.run
    async def run(self, run: RefundRun) -> str:
        if not run.requested_by.startswith("gateway:"):
            # Online mode: the gateway is asked; its answer, or its webhook, whichever comes
            # first, finishes the refund (the second finds it done). Offline: None.
            answer = await workflow.execute_activity_method(
                RefundActivities.refund_at_gateway,
                run,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )
            if answer is not None:
                self._answers.insert(0, answer)
        try:
            await workflow.wait_condition(
                lambda: bool(self._answers), timeout=ANSWER_WAIT, timeout_summary="gateway answer"
            )
        except TimeoutError:
            await workflow.execute_activity_method(
                RefundActivities.refund_unanswered,
                run,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )
            await workflow.wait_condition(lambda: bool(self._answers))
        done = ""
        # A failure may be followed by a success (the operator tried again at the gateway).
        while self._answers:
            done = await workflow.execute_activity_method(
                RefundActivities.finish_refund,
                RefundAnswer(self._answers.pop(0), run.requested_by),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )
        if done == RefundStatus.SUCCEEDED and (
            run.settles_parked or run.requested_by == LATE_PAYMENT
        ):
            await workflow.execute_activity_method(
                RefundActivities.settle_parked,
                run,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return done
