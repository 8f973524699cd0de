"""A vendor's orders and its answers to them (SEQ-BP-002, issue 28): list, accept, reject.

A vendor token sees and answers its own orders only (another vendor's is not found, so its
existence is not told); an admin's, every vendor's. Accept and reject are decided in the
database (`db.fulfilment`, one conditional update each, which also decides the race with
the window); after the commit the refund a rejection asked for is started, and the order's
confirmation workflow told, both best effort: a lost refund start is found again by the
window keeper and the reconciliation sweep, a lost signal by the workflow reading the row.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, StringConstraints
from sqlalchemy import select
from temporalio.service import RPCError

from api.auth import Caller, DepsDep, Role, VendorCaller
from api.deps import Deps
from api.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from api.fields import VendorId, storable
from api.schemas import RequestBody
from db.fulfilment import Decided, NotPending, accept, reject
from db.models import Order
from db.order_view import BadCursor, order_view, vendor_page
from domain.fulfilment import VendorAnswer
from domain.payments import RefundRun
from domain.statuses import FulfilmentStatus, RefundStatus
from domain.views import OrderView, VendorOrderPage
from workflows.fulfilment_client import tell_fulfilment
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.vendor")
router = APIRouter(prefix="/vendor")


@router.get("/orders")
async def vendor_orders(
    caller: VendorCaller,
    deps: DepsDep,
    status: FulfilmentStatus | None = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    vendor: VendorId | None = None,
) -> VendorOrderPage:
    """The caller's paid orders, newest first, filtered by `fulfilment` (`status`); pass
    `next` back as `after` for older ones. An admin sees every vendor's, or `vendor`'s."""
    if caller.role == Role.VENDOR:
        if vendor not in (None, caller.sub):
            raise Forbidden("a vendor sees its own orders only")
        vendor = caller.sub
    try:
        start = None if after is None else uuid.UUID(after)
    except ValueError as exc:
        raise BadRequest("after: an order id from `next`") from exc
    async with deps.sessions() as s:
        try:
            return await vendor_page(s, vendor, status, start, limit)
        except BadCursor as exc:
            raise BadRequest(str(exc)) from exc


@router.post("/orders/{order_id}/accept")
async def accept_order(order_id: str, caller: VendorCaller, deps: DepsDep) -> OrderView:
    """`accepted` (`VendorAccepted`): its ticket is issued and mailed now. 409 unless the
    order is paid and waits for acceptance."""
    key = await _own_order(deps, caller, order_id)
    try:
        async with deps.sessions.begin() as s:
            decided = await accept(s, key, caller.actor)
    except NotPending as exc:
        raise Conflict(str(exc)) from exc
    await _follow(deps, decided, VendorAnswer(str(key), decided.fulfilment, caller.actor))
    return await _view(deps, key)


class RejectIn(RequestBody):
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=500), AfterValidator(storable)
    ]


@router.post("/orders/{order_id}/reject", status_code=202)
async def reject_order(
    order_id: str, body: RejectIn, caller: VendorCaller, deps: DepsDep
) -> OrderView:
    """`rejected` with the reason (`VendorRejected`): the order's full refund is started
    (`requested_by: vendor:{id}`) and the payer mailed. 409 unless it waits for acceptance."""
    key = await _own_order(deps, caller, order_id)
    try:
        async with deps.sessions.begin() as s:
            decided = await reject(s, key, caller.actor, body.reason)
    except NotPending as exc:
        raise Conflict(str(exc)) from exc
    answer = VendorAnswer(str(key), decided.fulfilment, caller.actor, body.reason)
    await _follow(deps, decided, answer)
    return await _view(deps, key)


async def _own_order(deps: Deps, caller: Caller, order_id: str) -> uuid.UUID:
    """The order's id if the caller may answer it: its vendor, or an admin."""
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise NotFound("no such order") from exc
    async with deps.sessions() as s:
        found = (await s.execute(select(Order.vendor).where(Order.id == key))).one_or_none()
    if found is None or (caller.role == Role.VENDOR and found.vendor != caller.sub):
        raise NotFound("no such order")
    return key


async def _follow(deps: Deps, decided: Decided, answer: VendorAnswer) -> None:
    """After the commit: the rejection's refund started, the confirmation told. Temporal
    down: the refund stays pending (the keeper and the sweep start it), the workflow reads
    the row at the window's end; the answer is given all the same."""
    try:
        client = await deps.temporal()
    except Unavailable as exc:
        log.warning("order %s %s; not followed up yet: %s", decided.order_id, answer, exc)
        return
    asked = decided.refund
    if asked is not None and asked.status == RefundStatus.PENDING:
        try:
            run = RefundRun(asked.provider, asked.transaction_id, answer.actor)
            await start_refund(client, deps.settings.task_queue, run)
        except RPCError as exc:
            log.warning("order %s rejected; refund not started yet: %s", decided.order_id, exc)
    await tell_fulfilment(client, decided.provider, decided.transaction_id, answer)


async def _view(deps: Deps, order_id: uuid.UUID) -> OrderView:
    async with deps.sessions() as s:
        view = await order_view(s, order_id)
    assert view is not None
    return view
