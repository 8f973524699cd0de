"""Starting and telling `order-{order_id}` from outside a workflow (API, sweep)."""

from __future__ import annotations

import logging
from datetime import datetime

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.orders import OrderClosed, OrderRun, OrderState
from domain.payments import order_workflow_id
from workflows.confirmation_client import START_TIMEOUT
from workflows.order_lifecycle import ORDER_STATE, OrderLifecycleWorkflow
from workflows.payment_confirmation import ORDER_ID

log = logging.getLogger("paysaga.orders")


async def start_order_lifecycle(
    client: Client, task_queue: str, order_id: str, expires_at: datetime, *, paid: bool = False
) -> bool:
    """Starts the order's workflow; False if it exists (or existed) already. `paid`: the order
    is paid already (the sweep starting a workflow that was missed), told at start."""
    run = OrderRun(order_id, expires_at.isoformat())
    try:
        await client.start_workflow(
            OrderLifecycleWorkflow.run,
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
            start_signal="paid" if paid else None,
            rpc_timeout=START_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def handle(client: Client, order_id: str) -> WorkflowHandle[OrderLifecycleWorkflow, str]:
    return client.get_workflow_handle_for(OrderLifecycleWorkflow.run, order_workflow_id(order_id))


async def tell_closed(client: Client, order_id: str, reason: str) -> None:
    """Best effort: a workflow that misses this finds the order cancelled when its timer
    fires, and ends the same way."""
    try:
        await handle(client, order_id).signal(OrderLifecycleWorkflow.closed, OrderClosed(reason))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("could not tell order-%s it was cancelled: %s", order_id, exc)


async def tell_paid(client: Client, order_id: str) -> None:
    """For a repair outside the confirmation workflow (the sweep). Best effort: a lifecycle
    that misses it finds the order paid when its window ends, and places it then."""
    try:
        await handle(client, order_id).signal(OrderLifecycleWorkflow.paid)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("could not tell order-%s it is paid: %s", order_id, exc)
