"""The order lifecycle: `order-{order_id}`, started with the order by `POST /orders` until
the window keeper (`workflows.window_keeper`, issue 24) took the payment window over. No
longer started; kept registered, unchanged, so that lifecycles running when a worker of the
new version takes over finish (nobody signals them any more: each ends by its timer, finds
its order's status in the database, and places a paid one once more, harmlessly, by key).

It holds the payment window as a durable timer. Whichever comes first ends it:
- `paid` (sent by the confirmation once the order is marked paid): `OrderPlaced`;
- `closed` (sent by the API once a customer or admin cancel committed): nothing left to do;
- the window's end: the pending attempt is looked up at the gateway first (a payment whose
  webhook never came is confirmed), then `expire_order` cancels the order, ends the pending
  attempt as `timeout` and releases the stock, unless a confirmation got there first.

Who wins a race between a confirmation and the window (or a cancel) is not decided here but
in the database, by one conditional update of the order's status (`db.orders.close_order`,
`db.orders.mark_paid`); this workflow acts on what that update says. The loser compensates: a
confirmation that finds the order cancelled stores the money and parks it as `late_payment`.

Bounded: a timer, at most two activities and a signal or two; nothing grows with time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from domain.orders import OrderClosed, OrderRun, OrderState
    from domain.statuses import CancelReason, OrderStatus
    from domain.workflow_names import CLOSED, ORDER_LIFECYCLE, ORDER_STATE, PAID, STATE

# The database may be down when the window closes: the cancel is retried by the server until
# it goes through (no events per attempt), never given up.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
STEP_TIMEOUT = timedelta(seconds=30)
# Added after histories were recorded without it: they replay without the look-up.
LOOK_UP_BEFORE_EXPIRY = "look-up-before-expiry"


@workflow.defn(name=ORDER_LIFECYCLE)
class OrderLifecycleWorkflow:
    @workflow.init
    def __init__(self, run: OrderRun) -> None:
        self._paid = False
        self._closed: OrderClosed | None = None
        self._state = OrderState.AWAITING_PAYMENT

    @workflow.run
    async def run(self, run: OrderRun) -> str:
        remaining = (datetime.fromisoformat(run.expires_at) - workflow.now()).total_seconds()
        if remaining > 0:
            try:
                await workflow.wait_condition(
                    lambda: self._paid or self._closed is not None,
                    timeout=timedelta(seconds=remaining),
                    timeout_summary="payment window",
                )
            except TimeoutError:
                pass
        if self._closed is None and not self._paid and workflow.patched(LOOK_UP_BEFORE_EXPIRY):
            await self._look_up(run.order_id)
        if self._closed is None and not self._paid:
            closed = await workflow.execute_activity_method(
                OrderActivities.expire_order,
                run.order_id,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )
            if (
                closed.changed or closed.reason == CancelReason.TIMEOUT
            ):  # (a retried expiry: not changed)
                return self._end(OrderState.EXPIRED)
            if closed.status == OrderStatus.AWAITING_PAYMENT:
                # Not cancelled: its payment arrived in time and is stored; the confirmation
                # (or the sweep that repairs it) marks it paid and says so.
                await workflow.wait_condition(lambda: self._paid or self._closed is not None)
            # Lost the race, or there was none: the order's own status says what happened.
            self._paid = self._paid or closed.status in (OrderStatus.PAID, OrderStatus.REFUNDED)
        if self._paid:
            await self._place(run.order_id)
            return self._end(OrderState.PAID)
        return self._end(OrderState.CANCELLED)

    async def _look_up(self, order_id: str) -> None:
        """SEQ-EH-001: before the window closes the order, a pending attempt is looked up at
        the gateway. A payment it reports captured is confirmed through its own workflow,
        which tells this one `paid`: the order is not cancelled under a paying customer whose
        webhook never came. Best effort: if the gateway cannot say, the window closes as
        before (a payment found later is parked as late and refunded)."""
        try:
            await workflow.execute_activity_method(
                OrderActivities.look_up_payment,
                order_id,
                start_to_close_timeout=timedelta(seconds=90),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            workflow.logger.warning("order %s: payment look-up failed; closing", order_id)

    async def _place(self, order_id: str) -> None:
        """`OrderPlaced`, on every paid order's path: a local activity first (no activity task
        through the server: 10 ms less server CPU per paid order), then, if the database is
        down, a regular activity the server retries without adding events."""
        try:
            await workflow.execute_local_activity_method(
                OrderActivities.place_order,
                order_id,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        # A local activity's last failure surfaces as its ApplicationError (or a timeout),
        # not wrapped in an ActivityError (workflows.steps handles it the same way).
        except (ActivityError, ApplicationError, TimeoutError):
            await workflow.execute_activity_method(
                OrderActivities.place_order,
                order_id,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE,
            )

    def _end(self, state: OrderState) -> str:
        self._state = state
        workflow.upsert_search_attributes([ORDER_STATE.value_set(state.value)])
        return state.value

    @workflow.signal(name=PAID)
    def paid(self) -> None:
        """The confirmation marked the order paid."""
        self._paid = True

    @workflow.signal(name=CLOSED)
    def closed(self, closed: OrderClosed) -> None:
        """The API cancelled the order (its transaction committed before this was sent)."""
        self._closed = closed

    @workflow.query(name=STATE)
    def state(self) -> str:
        return self._state.value
