"""Operators: open reconciliation cases, repairs to a payment's workflow, the audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import StringConstraints

from api.auth import AdminCaller, DepsDep
from api.errors import BadRequest, Conflict, NotFound, Unavailable
from api.schemas import RequestBody
from db.cases import list_cases
from db.journal import audit_trail as read_audit_trail
from domain.payments import AdminRequest
from domain.views import ActionAnswer, AuditEntryView, CaseView
from workflows.confirmation_client import ActionRefused, send_admin_action

router = APIRouter(prefix="/admin")


class ActionIn(RequestBody):
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    order_id: str | None = None  # attach
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None  # refund
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None  # resolve


@router.get("/reconciliation")
async def open_cases(
    _: AdminCaller,
    deps: DepsDep,
    include_resolved: bool = False,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CaseView]:
    """Open cases, oldest first, a page at a time: pass the last `id` as `after` for the next
    (an empty page is the end). `?include_resolved=true` adds the resolved ones."""
    return await list_cases(
        deps.sessions, include_resolved=include_resolved, after=after, limit=limit
    )


@router.post("/payments/{provider}/{transaction_id}/{action}", status_code=202)
async def payment_action(
    provider: str,
    transaction_id: str,
    action: Literal["retry", "attach", "refund", "resolve"],
    caller: AdminCaller,
    deps: DepsDep,
    body: Annotated[ActionIn | None, Body()] = None,
) -> ActionAnswer:
    """Delivers the action to `payment-{provider}-{transaction_id}` as the update of the same
    name (the signals of these names are for the Temporal UI and CLI); the workflow decides,
    and a refusal is its reason, answered 409."""
    if provider not in deps.gateways:
        raise NotFound(f"unknown provider {provider}")
    body = body or ActionIn()
    if action == "attach":  # the shape of the input; whether it may act is the workflow's call
        try:
            uuid.UUID(body.order_id or "")
        except ValueError as exc:
            raise BadRequest("attach needs an order_id naming an order") from exc
    request = AdminRequest(
        request_id=body.request_id or str(uuid.uuid4()),
        admin=f"admin:{caller.sub}",
        order_id=body.order_id,
        note=body.note,
        reason=body.reason,
    )
    if problem := request.problem():
        raise BadRequest(problem)
    try:
        decision = await send_admin_action(
            await deps.temporal(), provider, transaction_id, action, request
        )
    except ActionRefused as exc:
        error = {404: NotFound, 409: Conflict, 503: Unavailable}[exc.status]
        raise error(str(exc)) from exc
    return ActionAnswer.of(decision)


@router.get("/audit")
async def audit_trail(
    _: AdminCaller, deps: DepsDep, order_id: Annotated[str, Query()]
) -> list[AuditEntryView]:
    """The order's audit trail, oldest first."""
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise BadRequest("order_id must be a UUID") from exc
    async with deps.sessions() as s:
        return await read_audit_trail(s, key)
