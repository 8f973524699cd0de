"""Orders and their current status: checkout, cancel, new attempts, ticket, refund."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import AfterValidator, EmailStr, Field, StringConstraints
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError
from temporalio.service import RPCError

from api.auth import Caller, CurrentCaller, DepsDep
from api.checkout import cancel_quietly, open_payment, refusing, representable
from api.deps import Deps
from api.errors import (
    ApiError,
    Conflict,
    NotFound,
    TooManyRequests,
    Unavailable,
    documented,
)
from api.fields import Name, Sku, storable
from api.schemas import RequestBody
from db.attempts import AttemptRefused, new_attempt, payable
from db.catalog import MixedCurrencies, MixedVendors, OutOfStock
from db.holds import HoldLimit, Limits, TooManyOrders
from db.models import Order, Payment
from db.order_view import order_view
from db.orders import NewOrder, close_order, create_order
from db.refunds import RefundRefused, request_refund
from db.tickets import NotPaid, ticket_pdf
from domain.payments import ATTACHED, RefundRun
from domain.statuses import OrderStatus, RefundStatus
from domain.views import OrderView, PlacedOrderView
from gateways import registry
from gateways.api import CheckoutIntent, GatewayApi, GatewayRefused, GatewayUnavailable
from workflows.order_client import start_order_lifecycle
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.orders")
router = APIRouter()


def _registered(name: str) -> str:
    if not registry.is_registered(name):
        raise ValueError(f"must be one of the gateways: {', '.join(registry.names())}")
    return name


Provider = Annotated[str, StringConstraints(max_length=64), AfterValidator(_registered)]


class ItemIn(RequestBody):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=1000)]


class AttendeeIn(RequestBody):
    name: Name
    email: EmailStr


class OrderIn(RequestBody):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)]
    provider: Provider
    attendee: AttendeeIn | None = None


@router.post("/orders", status_code=201, responses=documented(429))
async def place_order(body: OrderIn, caller: CurrentCaller, deps: DepsDep) -> PlacedOrderView:
    """Reserves the stock and starts the order's lifecycle (`order-{id}`, the payment window).

    Stock first (SEQ-BP-002): the customer's limits and the stock are checked and the stock
    reserved before any gateway is called, so a sold-out checkout (409) or a customer past a
    limit (429) costs no gateway call. Online, the gateway's intent is made next, for the
    order's id and amount, and put on the order's first attempt (`api.checkout`); if the gateway
    fails, the order is cancelled (`checkout_failed`, its stock released) and the answer is a
    503 with nothing reserved.

    The row commits first, then the workflow starts: a workflow never acts on an order that
    does not exist. If the start fails the order stands (it can be paid) and the next
    reconciliation run starts its lifecycle (`lifecycle_started` is still false)."""
    items: dict[str, int] = {}
    for item in body.items:
        items[item.sku] = items.get(item.sku, 0) + item.quantity
    gateway = deps.gateway(body.provider)
    api = gateway.api
    if api is not None and refusing(api):  # no stock moved for a checkout bound to fail
        raise Unavailable("the payment gateway is unavailable; nothing was reserved")
    new = NewOrder(
        customer_id=caller.sub,
        items=items,
        provider=body.provider,
        # Offline mode: the adapter mints an id in the gateway's own shape (no API keys here).
        # Online: the gateway makes it once the stock is reserved.
        intent_id=None if api is not None else gateway.mint_intent_id(),
        attendee_name=body.attendee.name if body.attendee else None,
        attendee_email=str(body.attendee.email) if body.attendee else None,
        window_seconds=deps.settings.payment_window_seconds,
        limits=Limits(deps.settings.max_held_per_customer, deps.settings.orders_per_minute),
        accept_seconds=deps.settings.vendor_accept_seconds,
    )
    try:
        async with deps.sessions.begin() as s:
            placed = await create_order(s, new)
            if api is not None:  # raises: all rolled back
                representable(new.provider, placed.view.amount, placed.view.currency)
    except (OutOfStock, MixedCurrencies, MixedVendors, HoldLimit, TooManyOrders) as exc:
        raise _refused(exc) from exc
    view, client_secret = placed.view, None
    if api is not None:
        view, client_secret = await open_payment(deps, api, new, view)
    await _start_lifecycle(deps, placed.id, placed.expires_at)
    # Only in this answer: the browser's key to confirm the payment with Stripe.js.
    return view.with_client_secret(client_secret)


def _refused(exc: Exception) -> ApiError:
    """Why a checkout reserved nothing, as its answer."""
    if isinstance(exc, OutOfStock):
        return Conflict(f"unknown sku or not enough stock: {exc}", unavailable=exc.skus)
    if isinstance(exc, HoldLimit):
        return TooManyRequests(str(exc), error="hold_limit", held=exc.held, limit=exc.limit)
    if isinstance(exc, TooManyOrders):
        refused = TooManyRequests(str(exc), error="rate_limit", limit=exc.limit)
        refused.headers = {"Retry-After": "60"}
        return refused
    if isinstance(exc, MixedVendors):  # issue 28: one order, one vendor
        return Conflict(f"items of more than one vendor: {exc}", error="mixed_vendors")
    return Conflict(f"items are priced in different currencies: {exc}")


async def _start_lifecycle(deps: Deps, order_id: uuid.UUID, expires_at: datetime) -> None:
    try:
        await start_order_lifecycle(
            await deps.temporal(), deps.settings.task_queue, str(order_id), expires_at
        )
        async with deps.sessions.begin() as s:
            await s.execute(
                update(Order).where(Order.id == order_id).values(lifecycle_started=True)
            )
    except (RPCError, Unavailable, DBAPIError, InterfaceError, OSError) as exc:
        log.warning("order %s: lifecycle not started, the sweep will: %s", order_id, exc)


async def _view(deps: Deps, order_id: uuid.UUID) -> OrderView:
    async with deps.sessions() as s:
        view = await order_view(s, order_id)
    assert view is not None
    return view


async def _own_order(deps: Deps, caller: Caller, order_id: str) -> uuid.UUID:
    """The order's id if the caller may act on it; another customer's order is not found."""
    return (await _order_and_owner(deps, caller, order_id))[0]


async def _order_and_owner(deps: Deps, caller: Caller, order_id: str) -> tuple[uuid.UUID, str]:
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise NotFound("no such order") from exc
    async with deps.sessions() as s:
        owner = await s.scalar(select(Order.customer_id).where(Order.id == key))
    if owner is None or (owner != caller.sub and not caller.is_admin):
        raise NotFound("no such order")
    return key, owner


@router.get("/orders/{order_id}")
async def get_order(order_id: str, caller: CurrentCaller, deps: DepsDep) -> OrderView:
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise NotFound("no such order") from exc
    async with deps.sessions() as s:
        view = await order_view(s, key)
    # Another customer's order is "not found", not "forbidden": its existence is not told.
    if view is None or (view.customer_id != caller.sub and not caller.is_admin):
        raise NotFound("no such order")
    return view


@router.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: str, caller: CurrentCaller, deps: DepsDep) -> OrderView:
    """Cancels an unpaid order: its pending attempt `cancelled`, stock released, once.
    Again on a cancelled order: 200, nothing changes. Paid (or refunded): 409."""
    key, owner = await _order_and_owner(deps, caller, order_id)
    reason = "customer" if caller.sub == owner else "admin"
    async with deps.sessions.begin() as s:
        actor = caller.sub if reason == "customer" else f"admin:{caller.sub}"
        changed, status, _ = await close_order(s, key, reason, actor)
    if status in (OrderStatus.PAID, OrderStatus.REFUNDED):
        raise Conflict(f"the order is {status}; a paid order is refunded, not cancelled")
    if status == OrderStatus.AWAITING_PAYMENT:  # not changed: its payment is stored already
        raise Conflict("a payment for this order has arrived and is being confirmed")
    if changed:
        await deps.tell_closed(key, reason)
    return await _view(deps, key)


class AttemptIn(RequestBody):
    provider: Provider | None = None


@router.post("/orders/{order_id}/payments", status_code=201)
async def new_payment_attempt(
    order_id: str, caller: CurrentCaller, deps: DepsDep, body: AttemptIn | None = None
) -> PlacedOrderView:
    """A new attempt, with a new intent, after a failed or cancelled one, while the window is
    open (409 once the order is paid, cancelled or expired, or while an attempt is pending).
    Online, the intent is the gateway's own (a new PaymentIntent, a new Razorpay order), made
    only once the order is known to take an attempt; offline one is minted here."""
    key = await _own_order(deps, caller, order_id)
    provider = body.provider if body and body.provider else await _last_provider(deps, key)
    gateway = deps.gateway(provider)
    intent: CheckoutIntent | None = None
    try:
        if gateway.api is not None:
            async with deps.sessions() as s:
                order, attempt = await payable(s, key, lock=False)
            representable(provider, order.amount, order.currency)
            intent = await _intent(gateway.api, key, order.amount, order.currency, attempt)
        async with deps.sessions.begin() as s:
            intent_id = intent.intent_id if intent else gateway.mint_intent_id()
            await new_attempt(s, key, provider, intent_id)
    except AttemptRefused as exc:
        if intent is not None and gateway.api is not None:  # the order changed meanwhile
            await cancel_quietly(gateway.api, intent.intent_id)
        raise Conflict(str(exc)) from exc
    view = await _view(deps, key)
    # Only in this answer: the browser's key to pay the new intent (Stripe.js).
    return view.with_client_secret(intent.client_secret if intent else None)


async def _last_provider(deps: Deps, key: uuid.UUID) -> str:
    """The gateway of the order's last real attempt (not money an admin attached)."""
    async with deps.sessions() as s:
        provider = await s.scalar(
            select(Payment.provider)
            .where(Payment.order_id == key, ~Payment.intent_id.startswith(ATTACHED))
            .order_by(Payment.id.desc())
            .limit(1)
        )
    assert provider is not None  # every order is created with its first attempt
    return provider


async def _intent(
    api: GatewayApi, order_id: uuid.UUID, amount: int, currency: str, attempt: int
) -> CheckoutIntent:
    try:
        return await api.create_intent(str(order_id), amount, currency, attempt)
    except (GatewayUnavailable, GatewayRefused) as exc:
        raise Unavailable(f"the payment gateway is unavailable; try again: {exc}") from exc


@router.get(
    "/orders/{order_id}/ticket",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the ticket as a PDF",
        }
    },
)
async def get_ticket(order_id: str, caller: CurrentCaller, deps: DepsDep) -> Response:
    """The ticket and receipt as a PDF, with its QR code. 409 until the order is paid (and
    after it is refunded: the ticket is void then). Made once and stored; a download before
    the confirmation's ticket step has run makes it, the same for everyone."""
    key = await _own_order(deps, caller, order_id)
    try:
        pdf = (await ticket_pdf(deps.sessions, key, deps.settings.organizer_name)).pdf
    except NotPaid as exc:
        raise Conflict("the order is not paid: no valid ticket") from exc
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="ticket-{str(key)[:8]}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


class RefundIn(RequestBody):
    reason: Annotated[str, StringConstraints(max_length=2000), AfterValidator(storable)] | None = (
        None
    )


@router.post("/orders/{order_id}/refund", status_code=202)
async def refund_order(
    order_id: str, caller: CurrentCaller, deps: DepsDep, body: RefundIn | None = None
) -> OrderView:
    """Asks for the paid order's money back, in full: 202 with the order and its `refund`
    (`pending` until the gateway confirms; then the order is `refunded` and its stock
    released). An owner may ask within PAYSAGA_REFUND_WINDOW_SECONDS of paying, an admin
    always; 409 with the reason otherwise, or if the order is not paid. Asked again while one
    is pending: 202, nothing new."""
    key, owner = await _order_and_owner(deps, caller, order_id)
    actor = f"admin:{caller.sub}" if caller.is_admin and caller.sub != owner else caller.sub
    try:
        async with deps.sessions.begin() as s:
            asked = await request_refund(
                s,
                key,
                actor=actor,
                is_admin=caller.is_admin,
                reason=body.reason if body else None,
                window_seconds=deps.settings.refund_window_seconds,
            )
    except RefundRefused as exc:
        raise Conflict(str(exc)) from exc
    if asked.status == RefundStatus.PENDING:
        # Offline mode: the operator refunds in the gateway's dashboard; its refund webhook
        # completes this workflow. Started again on a repeat: it is the same one.
        await start_refund(
            await deps.temporal(),
            deps.settings.task_queue,
            RefundRun(asked.provider, asked.transaction_id, actor),
        )
    return await _view(deps, key)
