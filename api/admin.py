"""Operators: open reconciliation cases, repair signals to a payment's workflow, audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, StringConstraints
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from api.auth import AdminCaller, DepsDep
from api.errors import BadRequest, NotFound
from db.models import AuditEntry, ReconciliationCase
from domain.payments import PROVIDERS, AdminRequest, confirmation_workflow_id
from workflows.payment_confirmation import ConfirmPaymentWorkflow

router = APIRouter(prefix="/admin")


class ActionIn(BaseModel):
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    order_id: str | None = None
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


@router.get("/reconciliation")
async def open_cases(_: AdminCaller, deps: DepsDep) -> list[dict[str, Any]]:
    async with deps.sessions() as s:
        cases = await s.scalars(
            select(ReconciliationCase)
            .where(ReconciliationCase.state == "open")
            .order_by(ReconciliationCase.opened_at)
        )
        return [
            {
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
            }
            for c in cases
        ]


@router.post("/payments/{provider}/{transaction_id}/{action}", status_code=202)
async def payment_action(
    provider: str,
    transaction_id: str,
    action: Literal["attach", "resolve"],
    caller: AdminCaller,
    deps: DepsDep,
    body: Annotated[ActionIn | None, Body()] = None,
) -> dict[str, str]:
    body = body or ActionIn()
    if provider not in PROVIDERS:
        raise NotFound(f"unknown provider {provider}")
    if action == "attach":
        try:
            uuid.UUID(body.order_id or "")
        except ValueError as exc:
            raise BadRequest("attach needs {order_id} naming an order") from exc
    request = AdminRequest(
        request_id=body.request_id or str(uuid.uuid4()),
        admin=f"admin:{caller.sub}",
        order_id=body.order_id,
        note=body.note,
    )
    workflow_id = confirmation_workflow_id(provider, transaction_id)
    handle = (await deps.temporal()).get_workflow_handle_for(
        ConfirmPaymentWorkflow.run, workflow_id
    )
    signal = ConfirmPaymentWorkflow.attach if action == "attach" else ConfirmPaymentWorkflow.resolve
    try:
        await handle.signal(signal, request)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no running confirmation {workflow_id}") from exc
        raise
    return {"status": "signalled", "workflow_id": workflow_id, "request_id": request.request_id}


@router.get("/audit")
async def audit_trail(
    _: AdminCaller, deps: DepsDep, order_id: Annotated[str, Query()]
) -> list[dict[str, Any]]:
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise BadRequest("order_id must be a UUID") from exc
    async with deps.sessions() as s:
        rows = await s.scalars(
            select(AuditEntry).where(AuditEntry.order_id == key).order_by(AuditEntry.id)
        )
        return [
            {
                "id": r.id,
                "actor": r.actor,
                "action": r.action,
                "detail": r.detail,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]
