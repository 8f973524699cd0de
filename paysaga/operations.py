"""Operator actions shared by the admin API and `paysaga admin`: cases and repair signals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from db.models import ReconciliationCase
from domain.payments import ADMIN_ACTIONS, PROVIDERS, AdminRequest, confirmation_workflow_id
from workflows.payment_confirmation import ConfirmPaymentWorkflow


class ActionRefused(Exception):
    """The action cannot be delivered; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Delivered:
    workflow_id: str
    request_id: str
    state: str


async def send_admin_action(
    client: Client,
    provider: str,
    transaction_id: str,
    action: str,
    request: AdminRequest,
) -> Delivered:
    """Delivers `action` as the signal of that name, after checking it can act."""
    if provider not in PROVIDERS:
        raise ActionRefused(404, f"unknown provider {provider}")
    if action not in ADMIN_ACTIONS:
        raise ActionRefused(404, f"unknown action {action}; one of {', '.join(ADMIN_ACTIONS)}")
    if action == "attach":
        try:
            uuid.UUID(request.order_id or "")
        except ValueError as exc:
            raise ActionRefused(400, "attach needs an order_id naming an order") from exc
    workflow_id = confirmation_workflow_id(provider, transaction_id)
    handle = client.get_workflow_handle_for(ConfirmPaymentWorkflow.run, workflow_id)
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            status = description.status.name.lower() if description.status else "closed"
            raise ActionRefused(409, f"confirmation {workflow_id} has finished ({status})")
        state: dict[str, Any] = await handle.query(ConfirmPaymentWorkflow.state)
        if request.request_id in state["request_ids"]:  # a repeat: it already acted once
            return Delivered(workflow_id, request.request_id, state["state"])
        if action == "retry" and not (state["stuck"] or state["parked"]):
            raise ActionRefused(
                409, f"nothing to retry: {workflow_id} is {state['state']} and not failing"
            )
        if action != "retry" and not state["parked"]:
            raise ActionRefused(
                409,
                f"{action} acts on parked money; {workflow_id} is {state['state']}",
            )
        signal = getattr(ConfirmPaymentWorkflow, action)
        await handle.signal(signal, request)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ActionRefused(404, f"no confirmation {workflow_id}") from exc
        raise
    return Delivered(workflow_id, request.request_id, state["state"])


async def running_state(client: Client, workflow_id: str) -> dict[str, Any] | None:
    """A confirmation's `state` query while it runs; None once it finished or never existed."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return None
        state: dict[str, Any] = await handle.query(ConfirmPaymentWorkflow.state)
        return state
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def case_view(c: ReconciliationCase) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "provider": c.provider,
        "transaction_id": c.transaction_id,
        "order_id": str(c.order_id) if c.order_id else None,
        "amount": c.amount,
        "currency": c.currency,
        "opened_at": c.opened_at.isoformat(),
        "state": c.state,
        "reason": c.detail.get("reason"),
        "resolution": c.resolution,
        "resolved_at": c.resolved_at.isoformat() if c.resolved_at else None,
    }


async def list_cases(
    sessions: async_sessionmaker[AsyncSession], *, include_resolved: bool = False
) -> list[dict[str, Any]]:
    query = select(ReconciliationCase).order_by(ReconciliationCase.opened_at)
    if not include_resolved:
        query = query.where(ReconciliationCase.state == "open")
    async with sessions() as s:
        return [case_view(c) for c in await s.scalars(query)]
