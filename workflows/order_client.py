"""Starting `order-{order_id}` from outside a workflow (API, sweep); telling it what happened is
`workflows.order_signals`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.orders import OrderRun, OrderState
from domain.payments import order_workflow_id
from domain.workflow_names import ORDER_ID, ORDER_LIFECYCLE, ORDER_STATE, PAID
from workflows.confirmation_client import START_TIMEOUT


async def start_order_lifecycle(
    client: Client, task_queue: str, order_id: str, expires_at: datetime, *, paid: bool = False
) -> bool:
    """Starts the order's workflow; False if it exists (or existed) already. `paid`: the order
    is paid already (the sweep starting a workflow that was missed), told at start."""
    run = OrderRun(order_id, expires_at.isoformat())
    try:
        await client.start_workflow(
            ORDER_LIFECYCLE,
            run,
            id=order_workflow_id(order_id),
            task_queue=task_queue,
            # One lifecycle per order, ever. Signal-with-start (`paid`) cannot be combined
            # with FAIL: it signals a running one instead, which is what a paid order needs.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=(
                WorkflowIDConflictPolicy.USE_EXISTING if paid else WorkflowIDConflictPolicy.FAIL
            ),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATE, OrderState.AWAITING_PAYMENT.value),
                    SearchAttributePair(ORDER_ID, order_id),
                ]
            ),
            start_signal=PAID if paid else None,
            rpc_timeout=START_TIMEOUT,
            result_type=str,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def handle(client: Client, order_id: str) -> WorkflowHandle[Any, str]:
    """The order's lifecycle; its result is the `OrderState` it ended in."""
    return client.get_workflow_handle(order_workflow_id(order_id), result_type=str)
