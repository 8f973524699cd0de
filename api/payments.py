"""Synchronous confirmation: the customer's browser returns from the gateway's checkout.

`POST /payments/{name}/verify` for every registered gateway with a checkout return
(`gateways.checkout`): Stripe's return carries the PaymentIntent's id, looked up at Stripe and
confirmed once it has succeeded, for what Stripe received; Razorpay's carries a signature with
the API key secret, proof that this payment paid this Razorpay order, whose amount is fixed.
The proof starts the same `payment-{provider}-{transaction_id}` workflow the webhook starts, so
whichever of the two comes second is a duplicate, and the payment is stored and applied once.

The answer waits briefly for the order to be paid: 200 with the order once it is (never
before the payment is stored: the order is read from the database), else 202 `processing`,
and the workflow finishes on its own, through an outage too (the resilience seed's failure
log and scheduler are this workflow). A database that cannot even be read to find the order
is a 503; the gateway's webhook still confirms the payment.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError

from api.auth import CurrentCaller, DepsDep
from api.deps import Deps
from api.errors import BadRequest, Conflict, NotFound, Unavailable
from api.schemas import Processing
from db.models import Order, Payment
from db.order_view import order_view
from domain.payments import Confirmation, confirmation_workflow_id
from domain.statuses import OrderStatus, PaymentStatus
from domain.views import OrderView
from gateways import SignatureError, registry
from gateways.api import GatewayUnavailable
from gateways.checkout import (
    Attempt,
    AwaitingWebhook,
    NotSucceeded,
    NotVerifiable,
    UnknownIntent,
)
from observability.logs import log_context
from workflows.confirmation_client import start_confirmation

log = logging.getLogger("paysaga.payments")

WAIT_SECONDS = 3.0  # how long the browser's request waits for "paid" before 202
# 200 with the order (its response model), or the 202 `Processing` as a response of its own.
Answer = OrderView | JSONResponse
Endpoint = Callable[[BaseModel, Request, Any, Deps], Awaitable[Answer]]


def routes(gateways: registry.Gateways) -> APIRouter:
    """A verify route for every gateway with a checkout return, each with its own body."""
    router = APIRouter()
    for gateway in gateways:
        if gateway.checkout is None:
            continue
        router.add_api_route(
            f"/payments/{gateway.name}/verify",
            _endpoint(gateway.name, gateway.checkout.body),
            methods=["POST"],
            name=f"{gateway.name}_verify",
            summary=f"{gateway.name} checkout return",
            response_model=OrderView,
            responses={
                200: {"description": "the order, paid"},
                202: {"model": Processing, "description": "verified; being confirmed"},
            },
        )
    return router


def _endpoint(provider: str, body_model: type[BaseModel]) -> Endpoint:
    async def verify(
        body: BaseModel, request: Request, caller: CurrentCaller, deps: DepsDep
    ) -> Answer:
        return await checkout_return(provider, body, request, caller.sub, caller.is_admin, deps)

    verify.__annotations__["body"] = body_model  # FastAPI reads the body's model from here
    return verify


async def checkout_return(
    provider: str, body: BaseModel, request: Request, sub: str, is_admin: bool, deps: Deps
) -> Answer:
    checkout = deps.gateway(provider).checkout
    assert checkout is not None  # only gateways with a checkout return have this route
    try:
        checkout.check(body)
    except NotVerifiable as exc:
        # Not a 503: retrying will not help. The webhook still confirms the payment.
        raise Conflict(str(exc)) from exc
    except SignatureError as exc:
        source = request.client.host if request.client else None
        await deps.rejections.record(provider, source, "bad checkout signature", request.url.path)
        log.warning("rejected %s checkout return from %s: bad signature", provider, source)
        raise BadRequest(str(exc)) from exc
    attempt = await _attempt(deps, sub, is_admin, provider, checkout.intent_id(body))
    assert attempt.order_id is not None
    paid = attempt.transaction_id
    if attempt.status == PaymentStatus.PAID and paid and paid == checkout.transaction_id(body):
        # This very payment is stored as paid: nothing the gateway says can change that, so it
        # is not asked (a reloaded return page is no gateway call). Another payment for the
        # attempt (a second Razorpay payment) is confirmed as before.
        workflow_id = confirmation_workflow_id(provider, paid)
        return await _answer(
            attempt.order_id, await _paid_view(deps, attempt.order_id), workflow_id
        )
    try:
        confirmation = await checkout.confirmation(
            body,
            Attempt(str(attempt.order_id), attempt.amount, attempt.currency),
            time.time(),
        )
    except GatewayUnavailable as exc:
        raise Unavailable(f"the gateway did not answer: {exc}") from exc
    except AwaitingWebhook:
        # Verified, but only the webhook can tell the money was captured: 200 once it has.
        workflow_id = confirmation_workflow_id(provider, checkout.transaction_id(body) or "")
        return await _answer(
            attempt.order_id, await _paid_view(deps, attempt.order_id), workflow_id
        )
    except UnknownIntent as exc:
        raise NotFound(str(exc)) from exc
    except NotSucceeded as exc:
        raise Conflict(str(exc)) from exc
    return await _confirm_and_answer(deps, confirmation, attempt.order_id)


async def _confirm_and_answer(
    deps: Deps, confirmation: Confirmation, order_id: uuid.UUID
) -> Answer:
    """Joins (or starts) the confirmation's workflow, then 200 with the order once it reads
    paid within `WAIT_SECONDS`, else 202."""
    with log_context(transaction_id=confirmation.transaction_id, order_id=str(order_id)):
        result = await _start(deps, confirmation)
        log.info("%s return for %s: %s", confirmation.provider, confirmation.transaction_id, result)
    workflow_id = confirmation_workflow_id(confirmation.provider, confirmation.transaction_id)
    return await _answer(order_id, await _paid_view(deps, order_id), workflow_id)


async def _answer(order_id: uuid.UUID, view: OrderView | None, workflow_id: str) -> Answer:
    """200 with the paid order, else 202 `processing` and the confirmation's workflow."""
    if view is None:
        processing = Processing(order_id=order_id, workflow_id=workflow_id)
        return JSONResponse(processing.model_dump(mode="json"), status_code=202)
    return view


async def _attempt(deps: Deps, sub: str, is_admin: bool, provider: str, intent_id: str) -> Payment:
    """The attempt this gateway intent belongs to, if the caller owns it (404 otherwise). A
    database that cannot say is a 503: the browser may try again, and the gateway's webhook
    confirms the payment anyway."""
    try:
        async with deps.sessions() as s:
            row = (
                await s.execute(
                    select(Payment, Order.customer_id)
                    .join(Order, Order.id == Payment.order_id)
                    .where(Payment.provider == provider, Payment.intent_id == intent_id)
                )
            ).first()
    except (DBAPIError, InterfaceError, OSError) as exc:
        raise Unavailable("the order cannot be read now; try again shortly") from exc
    if row is None or (row[1] != sub and not is_admin):
        raise NotFound("no such order")
    payment: Payment = row[0]
    return payment


async def _start(deps: Deps, c: Confirmation) -> str:
    settings = deps.settings
    return await start_confirmation(
        await deps.temporal(), settings.task_queue, c, settings.recovery
    )


async def _paid_view(deps: Deps, order_id: uuid.UUID) -> OrderView | None:
    """The order once it reads as paid within `WAIT_SECONDS`; None otherwise. Polls the
    status alone (one small read per 0.1 s), and builds the whole view once."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            async with deps.sessions() as s:
                status = await s.scalar(select(Order.status).where(Order.id == order_id))
                if status == OrderStatus.PAID:
                    return await order_view(s, order_id)
        except (DBAPIError, InterfaceError, OSError):
            return None
        await asyncio.sleep(0.1)
    return None
