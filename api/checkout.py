"""Online checkout with the stock first (SEQ-BP-002, issue 26 item 2): `api.orders` has
reserved the order's stock, under the customer's limits, before any gateway is called; here
the gateway makes the intent for it, and it is put on the order's first attempt
(`db.orders.attach_intent`). If the gateway fails, the order is cancelled as
`checkout_failed`: its stock released, its placeholder attempt cancelled, `OrderCreated`
then `OrderCancelled` in the event log, and no attendee recorded (so nobody is mailed). The
customer is answered 503 with nothing reserved.

Why the order is written before the intent, not after: the stock must be held by something
the window and the invariants see (`stock_exact`, every order's `OrderCreated`), and a crash
between the two steps must leave nothing held for ever. A crash leaves an order awaiting
payment with a placeholder intent nobody can name: the window keeper closes it when its
window ends (`timeout`), and an intent made meanwhile was handed to nobody, so nobody pays it.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.exc import DBAPIError, InterfaceError

from api.deps import Deps
from api.errors import Conflict, Unavailable
from db.order_view import opened_view
from db.orders import NewOrder, attach_intent, close_order
from domain.statuses import CancelReason
from domain.views import OrderView
from gateways.api import GatewayApi, GatewayRefused, GatewayUnavailable
from gateways.calls import Calls
from gateways.currencies import NotRepresentable, to_gateway

log = logging.getLogger("paysaga.orders")
CHECKOUT_ACTOR = "system:checkout"  # who cancels an order whose gateway intent was not made


def refusing(api: GatewayApi) -> bool:
    """The gateway's breaker is open: its call would fail at once, so the checkout does not
    reserve stock only to release it (a look: it takes no half-open trial)."""
    calls = getattr(api, "calls", None)
    return isinstance(calls, Calls) and calls.breaker.refusing()


def representable(provider: str, amount: int, currency: str) -> None:
    """An amount the gateway would charge differently is no order (issue 26 item 4)."""
    try:
        to_gateway(provider, amount, currency)
    except NotRepresentable as exc:
        raise Conflict(f"this gateway cannot charge exactly {amount} {currency}: {exc}") from exc


async def open_payment(
    deps: Deps, api: GatewayApi, new: NewOrder, placed: OrderView
) -> tuple[OrderView, str | None]:
    """The reserved order's intent, made by the gateway and put on its first attempt; the
    order as answered, and the browser's key to pay it (Stripe's client secret).

    The gateway failing (or anything else here): the order is cancelled, its stock released,
    and the failure answered. A crash between the two steps leaves the order to its payment
    window (the sweep starts its lifecycle; it is cancelled as `timeout`), and an intent made
    meanwhile is one nobody was handed, so nobody can pay it."""
    order_id = placed.id
    try:
        intent = await api.create_intent(str(order_id), placed.amount, placed.currency)
    except Exception as exc:
        await _checkout_failed(deps, order_id)
        if isinstance(exc, GatewayUnavailable | GatewayRefused):
            raise Unavailable(
                f"the payment gateway is unavailable; nothing was reserved: {exc}"
            ) from exc
        raise
    async with deps.sessions.begin() as s:
        attached = await attach_intent(s, order_id, intent.intent_id, new)
    if not attached:
        await cancel_quietly(api, intent.intent_id)
        raise Conflict(
            "the order was cancelled while its payment was being set up (its stock was "
            "withdrawn?); nothing is reserved"
        )
    view = opened_view(placed, intent.intent_id, new.attendee_name, new.attendee_email)
    return view, intent.client_secret


async def _checkout_failed(deps: Deps, order_id: uuid.UUID) -> None:
    """The compensation of a checkout whose intent was not made: its order cancelled as
    `checkout_failed` (stock back, attempt cancelled, `OrderCancelled`, audited), once."""
    try:
        async with deps.sessions.begin() as s:
            await close_order(s, order_id, CancelReason.CHECKOUT_FAILED, CHECKOUT_ACTOR)
    except (DBAPIError, InterfaceError, OSError) as exc:
        log.warning(
            "order %s: not released after its checkout failed; its window will: %s", order_id, exc
        )


async def cancel_quietly(api: GatewayApi, intent_id: str) -> None:
    """An intent for an order that was not made: cancelled, so nobody can pay it. Best
    effort: one left behind cannot be paid into an order (its metadata names none that
    exists), and a payment to it would be parked as unmatched."""
    try:
        await api.cancel_intent(intent_id)
    except (GatewayUnavailable, GatewayRefused) as exc:
        log.warning("intent %s for an order not made stays open: %s", intent_id, exc)
