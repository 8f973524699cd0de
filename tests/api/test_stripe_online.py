"""Stripe online mode against a real Stripe emulator (`localstripe`, started here): the
PaymentIntent is created at checkout, a test card pays it, localstripe's own signed webhook
pays the order; the return URL's verify joins the same workflow; a refund goes through
Stripe's API; a Stripe that is down at checkout is a 503 with nothing reserved; an amount
Stripe would charge differently is a 409; every call to Stripe is measured, and verify asks
Stripe only when its answer can have changed.

Stock first (issue 26 item 2): the API talks to localstripe through a recording proxy
(`FaultyStripe`), so a test counts the PaymentIntents asked for: none for a sold-out checkout,
and a Stripe failing after the stock was reserved gives it back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from temporalio.service import RPCError

from api.app import create_app
from db.models import Event, Order, Payment, Product
from domain.payments import confirmation_workflow_id, refund_workflow_id
from gateways.stripe.checkout import CACHE_SECONDS
from observability.metrics import API
from paysaga.devstack import free_port
from tests.support.localstripe import (
    API_KEY,
    Fault,
    FaultyStripe,
    pay_with_card,
    stripe_client,
)
from tests.support.outcomes import (
    ONE_CONFIRMATION,
    assert_checkout_refused_with_nothing_reserved,
    effects,
    product_stock,
    window_outcome,
)
from tests.support.signing import SECRETS, stripe_failed_event, stripe_request
from tests.support.stack import Stack


@pytest.fixture
def stack_env(proxy: FaultyStripe, request: pytest.FixtureRequest) -> dict[str, str]:
    """Online mode against localstripe; a test adds or overrides settings (indirect)."""
    online = {"PAYSAGA_STRIPE_API_KEY": API_KEY, "PAYSAGA_STRIPE_API_BASE": proxy.url}
    return online | getattr(request, "param", {})


@pytest.fixture
async def webhooks_to_us(stack: Stack, localstripe: str) -> AsyncIterator[str]:
    """The API served over real HTTP, and localstripe told to send its webhooks there."""
    port = free_port()
    app = create_app(stack.settings, temporal=stack.client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient() as http:
        configured = await http.post(
            f"{localstripe}/_config/webhooks/paysaga",
            data={
                "url": f"http://127.0.0.1:{port}/api/v1/webhooks/stripe",
                "secret": SECRETS["stripe"],
            },
        )
        assert configured.status_code == 200, configured.text
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def paid_by_webhook(stack: Stack, order_id: str) -> None:
    """localstripe sends its webhook a second after the payment: wait for what it does."""
    for _ in range(150):
        if (await stack.order(order_id))["status"] == "paid":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} never paid by localstripe's webhook")


async def checkout(stack: Stack, localstripe: str, stock: int = 5) -> dict[str, Any]:
    order = await stack.place_order("stripe", amount=49900, currency="EUR", stock=stock)
    intent_id = order["payment"]["intent_id"]
    assert intent_id.startswith("pi_") and order["payment"]["client_secret"]
    intent = await asyncio.to_thread(
        stripe_client(localstripe).v1.payment_intents.retrieve, intent_id
    )
    assert (intent.amount, intent.currency, intent.metadata["order_id"]) == (
        49900,
        "eur",
        order["id"],
    )
    return order


async def test_checkout_card_webhook_verify_and_refund_through_stripe(
    stack: Stack, localstripe: str, webhooks_to_us: str
) -> None:
    order = await checkout(stack, localstripe)
    intent_id = order["payment"]["intent_id"]
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    # localstripe's own signed payment_intent.succeeded reaches the served API.
    await paid_by_webhook(stack, order["id"])
    outcome = await stack.result(confirmation_workflow_id("stripe", intent_id))
    assert outcome.outcome == "paid"
    assert (await stack.order(order["id"]))["status"] == "paid"
    # The browser comes back afterwards: the same workflow, nothing more.
    back = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user()
    )
    assert back.status_code == 200 and back.json()["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION

    asked = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert asked.status_code == 202
    handle = stack.client.get_workflow_handle(refund_workflow_id("stripe", intent_id))
    assert await asyncio.wait_for(handle.result(), timeout=60) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["refund"]["status"]) == ("refunded", "succeeded")
    refunds = await asyncio.to_thread(
        stripe_client(localstripe).v1.refunds.list, {"payment_intent": intent_id}
    )
    assert [(r.amount, r.status) for r in refunds.data] == [(49900, "succeeded")]


async def test_return_url_confirms_when_no_webhook_comes(stack: Stack, localstripe: str) -> None:
    order = await checkout(stack, localstripe)
    intent_id = order["payment"]["intent_id"]
    early = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user()
    )
    assert early.status_code == 409 and "requires_payment_method" in early.json()["detail"]
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    # An intent's answer is shared for a moment (no Stripe call per reload); the customer's
    # real return comes after paying, not a second after an early one.
    await asyncio.sleep(CACHE_SECONDS)
    back = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user()
    )
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "paid"
    # Paid is answered once the order reads paid; the audit and the ticket follow.
    await stack.result(confirmation_workflow_id("stripe", intent_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
    foreign = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user("eve")
    )
    assert foreign.status_code == 404


async def declined(stack: Stack, intent_id: str) -> None:
    """localstripe cannot retry a declined intent as Stripe does: the decline is signed here,
    as Stripe signs it, in Stripe's full shape."""
    event = stripe_failed_event(intent_id, 49900, "eur")
    assert (await stack.post("/webhooks/stripe", stripe_request(event))).json() == {
        "result": "accepted"
    }


async def test_a_declined_attempt_then_a_good_card_on_the_same_intent(
    stack: Stack, localstripe: str, webhooks_to_us: str
) -> None:
    order = await checkout(stack, localstripe)
    intent_id = order["payment"]["intent_id"]
    await declined(stack, intent_id)
    assert (await stack.order(order["id"]))["payment"]["status"] == "failed"
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    await paid_by_webhook(stack, order["id"])
    assert (await stack.result(confirmation_workflow_id("stripe", intent_id))).outcome == "paid"


@pytest.mark.parametrize(
    "stack_env", [{"PAYSAGA_STRIPE_API_BASE": "http://127.0.0.1:9"}], indirect=True
)
async def test_stripe_down_at_checkout_is_503_with_nothing_reserved(stack: Stack) -> None:
    await assert_checkout_refused_with_nothing_reserved(stack, "stripe")


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_PAYMENT_WINDOW_SECONDS": "4"}], indirect=True)
async def test_a_payment_whose_webhook_never_came_is_found_before_the_window_closes(
    stack: Stack, localstripe: str
) -> None:
    """SEQ-EH-001: no webhook reaches us (none is configured for this stack), no return;
    the window's end looks the intent up at Stripe and confirms it instead of cancelling."""
    order = await checkout(stack, localstripe)
    intent_id = order["payment"]["intent_id"]
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    assert await window_outcome(stack, order["id"]) == "paid"
    after = await stack.order(order["id"])
    assert after["status"] == "paid" and after["cancel_reason"] is None
    outcome = await stack.result(confirmation_workflow_id("stripe", intent_id))
    assert outcome.outcome == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_money_for_no_order_is_refunded_through_stripe_by_an_admin(
    stack: Stack, localstripe: str, webhooks_to_us: str
) -> None:
    """A PaymentIntent paysaga never created is paid: unmatched money, parked. An admin's
    `refund` sends it back through Stripe's refund API, and the parked payment ends refunded."""
    client = stripe_client(localstripe)
    intent = await asyncio.to_thread(
        client.v1.payment_intents.create, {"amount": 2500, "currency": "eur"}
    )
    assert await pay_with_card(localstripe, intent.id) == "succeeded"
    workflow_id = confirmation_workflow_id("stripe", intent.id)
    for _ in range(150):  # localstripe's webhook comes a second after the payment
        try:
            await stack.wait_state(workflow_id, "unmatched")
            break
        except RPCError:
            await asyncio.sleep(0.1)
    asked = await stack.http.post(
        f"/admin/payments/stripe/{intent.id}/refund",
        json={"reason": "no such order"},
        headers=stack.admin,
    )
    assert asked.status_code == 202, asked.text
    assert (await stack.result(workflow_id)).outcome == "refunded"
    refunds = await asyncio.to_thread(client.v1.refunds.list, {"payment_intent": intent.id})
    assert [(r.amount, r.status) for r in refunds.data] == [(2500, "succeeded")]
    assert (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json() == []


async def test_a_new_attempt_is_a_new_payment_intent_at_stripe(
    stack: Stack, localstripe: str, webhooks_to_us: str
) -> None:
    """Issue 26 item 3: a new attempt after a declined one pays a real PaymentIntent of its
    own (not an id minted here that nobody can pay), for the order's amount."""
    order = await checkout(stack, localstripe)
    first = order["payment"]["intent_id"]
    await declined(stack, first)
    again = await stack.http.post(f"/orders/{order['id']}/payments", headers=stack.user())
    assert again.status_code == 201, again.text
    attempt = again.json()["payment"]
    second = attempt["intent_id"]
    assert second != first and second.startswith("pi_") and attempt["client_secret"]
    intent = await asyncio.to_thread(stripe_client(localstripe).v1.payment_intents.retrieve, second)
    assert (intent.amount, intent.currency, intent.metadata["order_id"]) == (
        49900,
        "eur",
        order["id"],
    )
    pending = await stack.http.post(f"/orders/{order['id']}/payments", headers=stack.user())
    assert pending.status_code == 409  # one attempt at a time, and no intent made for it
    assert await pay_with_card(localstripe, second) == "succeeded"
    await paid_by_webhook(stack, order["id"])
    assert (await stack.result(confirmation_workflow_id("stripe", second))).outcome == "paid"
    view = await stack.order(order["id"])
    assert [(p["intent_id"], p["status"]) for p in view["payments"]] == [
        (first, "failed"),
        (second, "paid"),
    ]


def stripe_calls(call: str) -> float:
    """How many `call`s to Stripe this process's API has made (answered by Stripe)."""
    labels = {"provider": "stripe", "call": call, "result": "ok"}
    return API.get_sample_value("paysaga_gateway_call_seconds_count", labels) or 0.0


async def test_verify_asks_stripe_only_when_its_answer_can_have_changed(
    stack: Stack, localstripe: str
) -> None:
    order = await checkout(stack, localstripe)
    intent_id = order["payment"]["intent_id"]
    verify = {"payment_intent": intent_id}
    before = stripe_calls("look_up")
    early = await asyncio.gather(
        *(
            stack.http.post("/payments/stripe/verify", json=verify, headers=stack.user())
            for _ in range(5)
        )
    )
    assert {answer.status_code for answer in early} == {409}
    assert stripe_calls("look_up") == before + 1  # five returns at once: one look-up
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    await asyncio.sleep(CACHE_SECONDS)
    paid = await stack.http.post("/payments/stripe/verify", json=verify, headers=stack.user())
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    await stack.result(confirmation_workflow_id("stripe", intent_id))
    asked = stripe_calls("look_up")
    await asyncio.sleep(CACHE_SECONDS)
    for _ in range(5):  # reloads of the return page: stored as paid, Stripe is not asked
        again = await stack.http.post("/payments/stripe/verify", json=verify, headers=stack.user())
        assert again.status_code == 200 and again.json()["status"] == "paid"
    assert stripe_calls("look_up") == asked
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_a_call_to_stripe_shows_in_the_apis_metrics(stack: Stack, localstripe: str) -> None:
    def created(text: str) -> float:
        for line in text.splitlines():
            if line.startswith("paysaga_gateway_call_seconds_count{") and all(
                label in line
                for label in ('call="create_intent"', 'provider="stripe"', 'result="ok"')
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = created((await stack.http.get("/metrics")).text)
    await checkout(stack, localstripe)
    text = (await stack.http.get("/metrics")).text
    assert created(text) == before + 1
    assert (
        'paysaga_gateway_call_seconds_bucket{call="create_intent",le="10.0",provider="stripe",result="ok"}'
        in text
    )
    assert 'paysaga_gateway_circuit_state{provider="stripe"} 0.0' in text


async def test_an_amount_stripe_cannot_charge_exactly_is_refused_before_anything(
    stack: Stack, localstripe: str
) -> None:
    """500.50 MGA: ISO 4217 gives the ariary two decimals, Stripe none. Refused (409, the
    reason), with no stock taken and no call to Stripe; 500.00 MGA goes through as 500."""
    sku = f"CONF-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Pass", "unit_amount": 50050, "currency": "MGA", "stock": 3}
    assert (
        await stack.http.post("/admin/products", json=product, headers=stack.admin)
    ).status_code == 201
    before = stripe_calls("create_intent")
    refused = await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": 1}], "provider": "stripe"},
        headers=stack.user(),
    )
    assert refused.status_code == 409, refused.text
    assert "cannot charge exactly 50050 MGA" in refused.json()["detail"]
    assert stripe_calls("create_intent") == before
    async with stack.sessions() as s:
        assert await s.scalar(select(Product.stock).where(Product.sku == sku)) == 3
        assert (
            await s.scalar(
                select(func.count()).select_from(Order).where(Order.customer_id == "alice")
            )
            == 0
        )
    order = await stack.place_order("stripe", amount=50000, currency="MGA")
    intent = await asyncio.to_thread(
        stripe_client(localstripe).v1.payment_intents.retrieve, order["payment"]["intent_id"]
    )
    assert (intent.amount, intent.currency) == (500, "mga")
    assert order["amount"] == 50000  # stored in ISO minor units


INTENTS = "/v1/payment_intents"


def intents_asked(proxy: FaultyStripe) -> int:
    """PaymentIntents the API asked Stripe to create, answered or not."""
    return len(proxy.keys(INTENTS))


async def seat(stack: Stack, stock: int) -> str:
    return await stack.new_product(stock, "EUR")


async def test_a_sold_out_checkout_makes_no_stripe_call(stack: Stack, proxy: FaultyStripe) -> None:
    """SEQ-BP-002: the stock is checked before any payment is initiated. Two customers race
    for the last seat: one gets it (one PaymentIntent), the other a 409 and no intent at all;
    a third, later, the same."""
    sku = await seat(stack, stock=1)
    before = intents_asked(proxy)
    body = {"items": [{"sku": sku, "quantity": 1}], "provider": "stripe"}
    answers = await asyncio.gather(
        *(stack.http.post("/orders", json=body, headers=stack.user(who)) for who in ("ann", "bo"))
    )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["unavailable"] == [sku]
    won = next(a for a in answers if a.status_code == 201).json()
    assert won["payment"]["intent_id"].startswith("pi_") and won["payment"]["client_secret"]
    assert intents_asked(proxy) == before + 1
    later = await stack.http.post("/orders", json=body, headers=stack.user("cy"))
    assert later.status_code == 409
    assert intents_asked(proxy) == before + 1
    assert await product_stock(stack, sku) == 0


async def test_stripe_failing_after_the_stock_was_reserved_gives_it_back(
    stack: Stack, proxy: FaultyStripe, localstripe: str
) -> None:
    """Stripe answers 500 to the create and to its retry under a fresh key: 503, and the seat
    reserved for the checkout is back on sale (its order cancelled as `checkout_failed`, no
    attendee kept). The next checkout gets the seat and a PaymentIntent that pays."""
    sku = await seat(stack, stock=1)
    proxy.faults.append(Fault(INTENTS, times=2))
    body = {
        "items": [{"sku": sku, "quantity": 1}],
        "provider": "stripe",
        "attendee": {"name": "Ann", "email": "ann@example.com"},
    }
    failed = await stack.http.post("/orders", json=body, headers=stack.user())
    assert failed.status_code == 503, failed.text
    assert "nothing was reserved" in failed.json()["detail"]
    assert [status for _, status in proxy.keys(INTENTS)] == [500, 500]
    assert await product_stock(stack, sku) == 1
    async with stack.sessions() as s:
        (cancelled,) = (
            await s.execute(select(Order).where(Order.customer_id == "alice"))
        ).scalars()
        assert (cancelled.status, cancelled.cancel_reason, cancelled.attendee_email) == (
            "cancelled",
            "checkout_failed",
            None,
        )
        attempt = await s.scalar(select(Payment).where(Payment.order_id == cancelled.id))
        assert attempt is not None and attempt.status == "cancelled"
        assert not attempt.intent_id.startswith("pi_")  # the checkout never had an intent
        events = await s.scalars(
            select(Event.type).where(Event.order_id == cancelled.id).order_by(Event.id)
        )
        assert list(events) == ["OrderCreated", "OrderCancelled"]

    order = (await stack.http.post("/orders", json=body, headers=stack.user())).json()
    assert order["status"] == "awaiting_payment" and order["attendee"]["email"] == "ann@example.com"
    assert await product_stock(stack, sku) == 0
    intent_id = order["payment"]["intent_id"]
    assert await pay_with_card(localstripe, intent_id) == "succeeded"
    back = await stack.http.post(
        "/payments/stripe/verify", json={"payment_intent": intent_id}, headers=stack.user()
    )
    assert back.status_code == 200 and back.json()["status"] == "paid", back.text
    await stack.result(confirmation_workflow_id("stripe", intent_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_an_open_breaker_refuses_checkout_before_any_stock_moves(
    stack: Stack, proxy: FaultyStripe
) -> None:
    """Five checkouts find Stripe failing (each reserved, then released); the breaker is then
    open and the sixth is a 503 at once: no order, no stock moved, no call."""
    sku = await seat(stack, stock=3)
    proxy.faults.append(Fault(INTENTS, times=10))
    body = {"items": [{"sku": sku, "quantity": 1}], "provider": "stripe"}
    for _ in range(5):
        answer = await stack.http.post("/orders", json=body, headers=stack.user())
        assert answer.status_code == 503, answer.text
    asked = intents_asked(proxy)
    orders = await count_orders(stack)
    refused = await stack.http.post("/orders", json=body, headers=stack.user())
    assert refused.status_code == 503 and "nothing was reserved" in refused.json()["detail"]
    assert (intents_asked(proxy), await count_orders(stack)) == (asked, orders)
    assert await product_stock(stack, sku) == 3


async def count_orders(stack: Stack) -> int:
    async with stack.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Order)) or 0)
