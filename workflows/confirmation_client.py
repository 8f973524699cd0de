"""Talking to `payment-{provider}-{transaction_id}` from outside: start it, read its state, and
deliver admin actions. The API, `paysaga admin` and the reconciliation sweep all come here, as
reference-app-orders-go keeps its workflow-id helpers and client calls beside its API.

The rules of what an action may do live in the workflow alone (`ConfirmationState.may`); this
module delivers the action as an update and answers with the workflow's decision.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Literal

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.confirmation import AdminAction, AdminDecision, ConfirmationRun, ConfirmationState
from domain.payments import (
    AdminRequest,
    Confirmation,
    ConfirmationOutcome,
    PaymentState,
    RecoveryTiming,
    confirmation_workflow_id,
    is_identifier,
)
from domain.statuses import WebhookResult
from domain.workflow_names import (
    CONFIRM_PAYMENT,
    PAYMENT_STATE,
    REFUSED,
    STATE,
    TRANSACTION_ID,
    UPDATES,
)

# A gateway waits seconds, not minutes: answer 503 (it retries) rather than hang.
START_TIMEOUT = timedelta(seconds=5)
# An update needs the worker to decide; an admin waits this long before a 503.
UPDATE_TIMEOUT = timedelta(seconds=15)
UPDATE_TRIES = 6
BUSY = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.ABORTED)


async def start_confirmation(
    client: Client, task_queue: str, c: Confirmation, recovery: RecoveryTiming | None = None
) -> Literal[WebhookResult.ACCEPTED, WebhookResult.DUPLICATE]:
    """Starts the confirmation, or says it is a duplicate: one is running, or one completed.

    Conflict policy FAIL rather than USE_EXISTING: the server's "already started" is the
    public way to tell a duplicate from a first delivery (USE_EXISTING hides it in a private
    field of the handle). Either way no second run starts; the gateway gets its 200.
    """
    try:
        await client.start_workflow(
            CONFIRM_PAYMENT,
            ConfirmationRun(c, recovery, lean=True),
            id=confirmation_workflow_id(c.provider, c.transaction_id),
            task_queue=task_queue,
            # A completed confirmation is never run again; a running one is not started twice.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            rpc_timeout=START_TIMEOUT,
            result_type=ConfirmationOutcome,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PAYMENT_STATE, PaymentState.RECEIVED.value),
                    SearchAttributePair(TRANSACTION_ID, c.transaction_id),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        return WebhookResult.DUPLICATE
    return WebhookResult.ACCEPTED


async def running_state(client: Client, workflow_id: str) -> ConfirmationState | None:
    """A confirmation's state while it runs; None once it finished or never existed."""
    handle = client.get_workflow_handle(workflow_id, result_type=ConfirmationOutcome)
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return None
        # By name, with the result's type: a typed handle would import the workflow class.
        state: ConfirmationState = await handle.query(STATE, result_type=ConfirmationState)
        return state
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def next_attempt_within(client: Client, workflow_id: str, seconds: float) -> bool:
    """True if the server is already retrying one of this confirmation's steps on its own:
    an attempt is running, or the next one is due within `seconds`."""
    description = await client.get_workflow_handle(workflow_id).describe()
    horizon = datetime.now(UTC) + timedelta(seconds=seconds)
    for pending in description.raw_description.pending_activities:
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
            return True  # an attempt is running (or the activity is being cancelled)
        if not pending.HasField("next_attempt_schedule_time"):
            return True  # due now, waiting for a worker
        if pending.next_attempt_schedule_time.ToDatetime(UTC) <= horizon:
            return True
    return False


class ActionRefused(Exception):
    """The action cannot act; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def send_admin_action(
    client: Client, provider: str, transaction_id: str, action: str, request: AdminRequest
) -> AdminDecision:
    """Delivers `action` as the update of that name; the workflow's validator decides."""
    # The provider is the caller's to check (the API and the CLI know the registered gateways):
    # an unknown one names no workflow, so it is not found either way.
    try:
        admin_action = AdminAction(action)
    except ValueError as exc:
        known = ", ".join(AdminAction)
        raise ActionRefused(404, f"unknown action {action}; one of {known}") from exc
    if not is_identifier(transaction_id):
        raise ActionRefused(404, "no confirmation has that transaction id")
    workflow_id = confirmation_workflow_id(provider, transaction_id)
    handle = client.get_workflow_handle(workflow_id, result_type=ConfirmationOutcome)
    # The server may turn an update away while the workflow is busy: a signal met its
    # speculative workflow task, the run was continuing as new, or 10 updates were in flight.
    # The update id is the request id, so trying again cannot act twice.
    for attempt in range(UPDATE_TRIES):
        try:
            decision: AdminDecision = await handle.execute_update(
                UPDATES[admin_action],
                request,
                id=request.request_id,
                rpc_timeout=UPDATE_TIMEOUT,
                result_type=AdminDecision,
            )
            return decision
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == REFUSED:
                raise ActionRefused(409, f"{workflow_id}: {cause.message}") from exc
            raise ActionRefused(409, f"{workflow_id} could not take {action}: {cause}") from exc
        except RPCError as exc:
            last = attempt == UPDATE_TRIES - 1
            if exc.status == RPCStatusCode.NOT_FOUND:
                status = await _status(client, workflow_id)
                if status is None:
                    raise ActionRefused(404, f"no confirmation {workflow_id}") from exc
                if status != WorkflowExecutionStatus.RUNNING:
                    ended = f"confirmation {workflow_id} has finished ({status.name.lower()})"
                    raise ActionRefused(409, ended) from exc
            elif exc.status not in BUSY or last:
                raise
            await asyncio.sleep(0.1 * 2**attempt)
    raise ActionRefused(503, f"{workflow_id} is busy (continuing as new); try again")


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
