"""Synchronous confirmation: the customer's browser returns from the gateway's checkout.

Stripe: the return carries the PaymentIntent's id; it is looked up at Stripe (online mode),
and one that has succeeded is confirmed for the amount Stripe received.

Razorpay's checkout hands the browser `razorpay_order_id`, `razorpay_payment_id` and
`razorpay_signature`, the hex HMAC-SHA256 of `"{order_id}|{payment_id}"` with the API key
secret: proof that this payment paid this Razorpay order, whose amount is fixed. The proof
starts the same `payment-razorpay-{payment_id}` workflow the webhook starts, so whichever of
the two comes second is a duplicate, and the payment is stored and applied once.

The answer waits briefly for the order to be paid: 200 with the order once it is (never
before the payment is stored: the order is read from the database), else 202 `processing`,
and the workflow finishes on its own, through an outage too (the resilience seed's failure
log and scheduler are this workflow). A database that cannot even be read to find the order
is a 503; the gateway's webhook still confirms the payment.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError

from api.auth import CurrentCaller, DepsDep
from api.deps import Deps
from api.errors import BadRequest, Conflict, NotFound, Unavailable
from db.models import Order, Payment
from db.order_view import order_view
from domain.payments import Confirmation, OrderStatus, confirmation_workflow_id
from gateways.api import GatewayRefused, GatewayUnavailable
from observability.logs import log_context
from workflows.confirmation_client import start_confirmation

log = logging.getLogger("paysaga.payments")
router = APIRouter()

WAIT_SECONDS = 3.0  # how long the browser's request waits for "paid" before 202
RazorpayId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
HexSignature = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class RazorpayReturn(BaseModel):
    razorpay_order_id: RazorpayId
    razorpay_payment_id: RazorpayId
    razorpay_signature: HexSignature


def razorpay_checkout_signature(key_secret: str, order_id: str, payment_id: str) -> str:
    message = f"{order_id}|{payment_id}".encode()
    return hmac.new(key_secret.encode(), message, hashlib.sha256).hexdigest()


@router.post(
    "/payments/razorpay/verify",
    responses={202: {"description": "verified; the payment is being confirmed"}},
)
async def razorpay_verify(
    body: RazorpayReturn, request: Request, caller: CurrentCaller, deps: DepsDep
) -> JSONResponse:
    secret = deps.settings.razorpay_key_secret
    if not secret:
        # Not a 503: retrying will not help. The webhook still confirms the payment.
        raise Conflict("offline mode (no Razorpay API keys): checkout returns are not verified")
    expected = razorpay_checkout_signature(secret, body.razorpay_order_id, body.razorpay_payment_id)
    if not hmac.compare_digest(expected, body.razorpay_signature.lower()):
        source = request.client.host if request.client else None
        await deps.rejections.record("razorpay", source, "bad checkout signature", request.url.path)
        log.warning("rejected razorpay checkout return from %s: bad signature", source)
        raise BadRequest("razorpay_signature does not match this order and payment")
    attempt = await _attempt(deps, caller.sub, caller.is_admin, "razorpay", body.razorpay_order_id)
    confirmation = Confirmation(
        provider="razorpay",
        transaction_id=body.razorpay_payment_id,
        intent_id=body.razorpay_order_id,
        # The signature proves this payment paid this Razorpay order, whose amount is fixed.
        amount=attempt.amount,
        currency=attempt.currency,
        event_id=f"checkout:{body.razorpay_payment_id}",
        event_type="checkout.verified",
        order_id=str(attempt.order_id),
        received_at=time.time(),
    )
    return await _confirm_and_answer(deps, confirmation, attempt.order_id)


class StripeReturn(BaseModel):
    payment_intent: Annotated[str, StringConstraints(pattern=r"^pi_[A-Za-z0-9_]{1,250}$")]


@router.post(
    "/payments/stripe/verify",
    responses={202: {"description": "succeeded at Stripe; the payment is being confirmed"}},
)
async def stripe_verify(body: StripeReturn, caller: CurrentCaller, deps: DepsDep) -> JSONResponse:
    """The browser returns from Stripe with `payment_intent`: it is looked up at Stripe, and
    only a PaymentIntent that has succeeded is confirmed, for what Stripe received."""
    if deps.stripe_api is None:
        raise Conflict("offline mode (no Stripe API key): returns are not verified")
    attempt = await _attempt(deps, caller.sub, caller.is_admin, "stripe", body.payment_intent)
    try:
        intent = await deps.stripe_api.intent(body.payment_intent)
    except GatewayUnavailable as exc:
        raise Unavailable(f"Stripe did not answer: {exc}") from exc
    except GatewayRefused as exc:
        raise NotFound("no such PaymentIntent at Stripe") from exc
    if intent.status != "succeeded":
        raise Conflict(f"the PaymentIntent has not succeeded (it is {intent.status})")
    confirmation = intent.confirmation(
        f"return:{intent.id}", "payment_intent.verified", str(attempt.order_id), time.time()
    )
    return await _confirm_and_answer(deps, confirmation, attempt.order_id)


async def _confirm_and_answer(
    deps: Deps, confirmation: Confirmation, order_id: uuid.UUID
) -> JSONResponse:
    """Joins (or starts) the confirmation's workflow, then 200 with the order once it reads
    paid within `WAIT_SECONDS`, else 202."""
    with log_context(transaction_id=confirmation.transaction_id, order_id=str(order_id)):
        result = await _start(deps, confirmation)
        log.info("%s return for %s: %s", confirmation.provider, confirmation.transaction_id, result)
    view = await _paid_view(deps, order_id)
    if view is None:
        return JSONResponse(
            {
                "status": "processing",
                "order_id": str(order_id),
                "workflow_id": confirmation_workflow_id(
                    confirmation.provider, confirmation.transaction_id
                ),
            },
            status_code=202,
        )
    return JSONResponse(view)


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


async def _paid_view(deps: Deps, order_id: uuid.UUID) -> dict[str, Any] | None:
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
