"""The order lifecycle on real Temporal and PostgreSQL: the payment window (held by the
window keeper), failed and new attempts, cancels, late payments, the race between a
confirmation and the window's end, and the event feed. Windows are a few seconds long."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime

import pytest
from sqlalchemy import select, text

from db.models import AuditEntry, Event, Product, ReconciliationCase
from db.orders import NewOrder, create_order
from domain.payments import confirmation_workflow_id
from tests.support.gateway_events import failed, refund_notice, signed_confirmation, transaction_of
from tests.support.outcomes import count, stock_of, window_outcome
from tests.support.signing import (
    stripe_request,
    stripe_succeeded_event,
)
from tests.support.stack import Refuse, Stack

SHORT = {"PAYSAGA_PAYMENT_WINDOW_SECONDS": "2"}


async def event_types(stack: Stack, order_id: str) -> list[str]:
    async with stack.sessions() as s:
        rows = await s.scalars(
            select(Event.type).where(Event.order_id == uuid.UUID(order_id)).order_by(Event.id)
        )
        return list(rows)


@pytest.mark.parametrize("stack_env", [SHORT])
async def test_window_closes_cancels_the_order_and_releases_its_stock(stack: Stack) -> None:
    order = await stack.place_order("razorpay", stock=1)
    assert await stock_of(stack, order) == 0
    sku = order["items"][0]["sku"]
    # The one seat is held: a second customer is told which sku is unavailable.
    taken = await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": 1}], "provider": "stripe"},
        headers=stack.user("bob"),
    )
    assert taken.status_code == 409 and taken.json()["unavailable"] == [sku]

    assert await window_outcome(stack, order["id"]) == "expired"

    after = await stack.order(order["id"])
    assert (after["status"], after["cancel_reason"]) == ("cancelled", "timeout")
    assert [p["status"] for p in after["payments"]] == ["timeout"]
    assert await stock_of(stack, order) == 1
    assert await event_types(stack, order["id"]) == ["OrderCreated", "OrderCancelled"]
    async with stack.sessions() as s:
        actors = await s.scalars(
            select(AuditEntry.actor).where(AuditEntry.order_id == uuid.UUID(order["id"]))
        )
        assert list(actors) == ["system:payment_window"]
    # The seat is free again; a new attempt on the expired order is refused.
    again = await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": 1}], "provider": "stripe"},
        headers=stack.user("bob"),
    )
    assert again.status_code == 201, again.text
    late = await stack.http.post(f"/orders/{order['id']}/payments", headers=stack.user())
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
async def test_failed_payment_then_a_new_attempt_that_succeeds(stack: Stack, provider: str) -> None:
    order = await stack.place_order(provider)
    first_intent = order["payment"]["intent_id"]

    response = await stack.post(f"/webhooks/{provider}", failed(provider, order))
    assert response.json() == {"result": "accepted"}
    after = await stack.order(order["id"])
    assert after["status"] == "awaiting_payment"
    assert after["payment"]["status"] == "failed"
    # Told twice (gateways retry): nothing more happens.
    again = await stack.post(f"/webhooks/{provider}", failed(provider, order))
    assert again.json() == {"result": "ignored"}
    assert await count(stack.sessions, Event, Event.type == "PaymentFailed") == 1

    retry = await stack.http.post(f"/orders/{order['id']}/payments", json={}, headers=stack.user())
    assert retry.status_code == 201, retry.text
    second = retry.json()
    assert [p["status"] for p in second["payments"]] == ["failed", "pending"]
    assert second["payment"]["intent_id"] != first_intent
    assert second["payment"]["provider"] == provider
    pending = await stack.http.post(f"/orders/{order['id']}/payments", headers=stack.user())
    assert pending.status_code == 409 and "pending" in pending.json()["detail"]

    tx = transaction_of(provider, second, f"tx_{uuid.uuid4().hex[:12]}")
    assert (
        await stack.post(f"/webhooks/{provider}", signed_confirmation(provider, second, tx))
    ).json() == {"result": "accepted"}
    assert (await stack.result(confirmation_workflow_id(provider, tx))).outcome == "paid"
    assert await window_outcome(stack, order["id"]) == "paid"
    paid = await stack.order(order["id"])
    assert paid["status"] == "paid"
    assert [p["status"] for p in paid["payments"]] == ["failed", "paid"]
    assert await event_types(stack, order["id"]) == [
        "OrderCreated",
        "PaymentFailed",
        "PaymentConfirmed",
        "OrderPaid",
        "OrderPlaced",
    ]


async def test_stripe_intent_that_fails_then_succeeds_is_confirmed(stack: Stack) -> None:
    """The customer changes card: the same PaymentIntent fails, then succeeds. The failure
    did not spend the confirmation's workflow id, so the success is confirmed."""
    order = await stack.place_order("stripe", currency="EUR")
    intent = order["payment"]["intent_id"]
    assert (await stack.post("/webhooks/stripe", failed("stripe", order))).json() == {
        "result": "accepted"
    }
    assert (await stack.order(order["id"]))["payment"]["status"] == "failed"

    succeeded = stripe_request(stripe_succeeded_event(intent, order["amount"], "eur"))
    assert (await stack.post("/webhooks/stripe", succeeded)).json() == {"result": "accepted"}
    assert (await stack.result(confirmation_workflow_id("stripe", intent))).outcome == "paid"
    paid = await stack.order(order["id"])
    assert paid["status"] == "paid"
    assert [(p["intent_id"], p["status"]) for p in paid["payments"]] == [(intent, "paid")]
    # A failure delivered after the success (out of order) changes nothing.
    assert (await stack.post("/webhooks/stripe", failed("stripe", order))).json() == {
        "result": "ignored"
    }
    assert (await stack.order(order["id"]))["payment"]["status"] == "paid"


@pytest.mark.parametrize("provider", ["stripe", "standard"])
async def test_gateway_cancel_ends_the_attempt_and_the_order_waits(
    stack: Stack, provider: str
) -> None:
    """CONTRACT: a cancelled attempt leaves the order awaiting payment until its window
    closes; the customer may start a new attempt."""
    order = await stack.place_order(provider, stock=1)
    response = await stack.post(f"/webhooks/{provider}", failed(provider, order, "cancelled"))
    assert response.json() == {"result": "accepted"}
    after = await stack.order(order["id"])
    assert (after["status"], after["payment"]["status"]) == ("awaiting_payment", "cancelled")
    assert await stock_of(stack, order) == 0
    retry = await stack.http.post(f"/orders/{order['id']}/payments", headers=stack.user())
    assert retry.status_code == 201
    assert [p["status"] for p in retry.json()["payments"]] == ["cancelled", "pending"]


async def test_customer_cancel_releases_stock_once_and_a_late_payment_is_parked(
    stack: Stack,
) -> None:
    order = await stack.place_order("razorpay", stock=2)
    assert await stock_of(stack, order) == 1
    other = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user("mallory"))
    assert other.status_code == 404

    cancelled = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert (body["status"], body["cancel_reason"], body["payment"]["status"]) == (
        "cancelled",
        "customer",
        "cancelled",
    )
    again = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert await stock_of(stack, order) == 2
    assert await window_outcome(stack, order["id"]) == "cancelled"
    audit = await stack.http.get(f"/admin/audit?order_id={order['id']}", headers=stack.admin)
    cancels = [(e["action"], e["actor"]) for e in audit.json() if "cancel" in e["action"]]
    assert cancels == [("order.cancelled", "alice")]  # once, by whom

    # The money comes anyway: stored, never applied, parked for an admin as a late payment.
    tx = f"pay_{uuid.uuid4().hex[:14]}"
    assert (
        await stack.post("/webhooks/razorpay", signed_confirmation("razorpay", order, tx))
    ).json() == {"result": "accepted"}
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "needs_reconciliation", lambda s: s.parked)
    late = await stack.order(order["id"])
    assert late["status"] == "cancelled"
    assert (late["payment"]["status"], late["payment"]["transaction_id"]) == ("paid", tx)
    assert await stock_of(stack, order) == 2
    async with stack.sessions() as s:
        case = await s.scalar(
            select(ReconciliationCase).where(ReconciliationCase.transaction_id == tx)
        )
    assert case is not None and (case.kind, case.state) == ("late_payment", "open")

    refunded = await stack.http.post(
        f"/admin/payments/razorpay/{tx}/refund",
        json={"reason": "order was cancelled before payment"},
        headers=stack.admin,
    )
    assert refunded.status_code == 202, refunded.text
    # Offline mode: the operator refunds at the gateway, whose notice settles it.
    await stack.wait_state(workflow_id, "refund_pending")
    notice = refund_notice("razorpay", order, tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert (await stack.result(workflow_id)).outcome == "refunded"
    final = await stack.order(order["id"])
    assert (final["status"], final["payment"]["status"]) == ("cancelled", "refunded")
    assert "OrderPaid" not in await event_types(stack, order["id"])


async def test_admin_cancels_any_order_and_a_paid_order_cannot_be_cancelled(
    stack: Stack,
) -> None:
    order = await stack.place_order("standard")
    by_admin = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.admin)
    assert (by_admin.status_code, by_admin.json()["cancel_reason"]) == (200, "admin")

    paid = await stack.place_order("standard")
    tx = f"txn_{uuid.uuid4().hex[:12]}"
    await stack.post("/webhooks/standard", signed_confirmation("standard", paid, tx))
    await stack.result(confirmation_workflow_id("standard", tx))
    refused = await stack.http.post(f"/orders/{paid['id']}/cancel", headers=stack.user())
    assert refused.status_code == 409 and "paid" in refused.json()["detail"]
    assert (await stack.order(paid["id"]))["status"] == "paid"
    assert await window_outcome(stack, paid["id"]) == "paid"


@pytest.mark.parametrize("stack_env", [SHORT])
async def test_a_window_needs_nothing_but_its_committed_row(stack: Stack) -> None:
    """The window is the order's row: orders written straight to the database (as by an API
    that died right after its commit, with Temporal never told) are still closed on time by
    the window keeper, and one paid meanwhile is placed by its confirmation alone."""
    intents = [f"pi_{uuid.uuid4().hex}" for _ in range(2)]
    async with stack.sessions.begin() as s:
        await s.execute(
            text(
                "INSERT INTO products (sku, name, unit_amount, currency, stock, total_stock) "
                "VALUES ('MISSED', 'Pass', 100, 'EUR', 5, 5)"
            )
        )
        orders = [
            await create_order(
                s, NewOrder("alice", {"MISSED": 1}, "stripe", intent, None, None, window_seconds=2)
            )
            for intent in intents
        ]
    paid = stripe_request(stripe_succeeded_event(intents[1], 100, "eur"))
    assert (await stack.post("/webhooks/stripe", paid)).json() == {"result": "accepted"}
    assert (await stack.result(confirmation_workflow_id("stripe", intents[1]))).outcome == "paid"
    assert (await event_types(stack, str(orders[1].id)))[-2:] == ["OrderPaid", "OrderPlaced"]

    assert await window_outcome(stack, str(orders[0].id)) == "expired"
    closed = await stack.order(str(orders[0].id))
    # Closed within a poll of its end (the keeper polls every 0.5 s), not a timer's round.
    assert datetime.fromisoformat(closed["cancelled_at"]) >= orders[0].expires_at
    assert (
        datetime.fromisoformat(closed["cancelled_at"]) - orders[0].expires_at
    ).total_seconds() < 5
    assert await window_outcome(stack, str(orders[1].id)) == "paid"
    assert await stock_of(stack, {"items": [{"sku": "MISSED"}]}) == 4


RACES = 50


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_PAYMENT_WINDOW_SECONDS": "4"}])
async def test_confirmation_racing_the_window_never_pays_and_cancels(stack: Stack) -> None:
    """50 confirmations sent just before their order's window closes, 50 just after it did.
    Whichever wins, the other compensates: an order is paid or cancelled (its money parked
    as a late payment), never both; stock exact."""
    seats = 2 * RACES
    product = {"sku": "RACE", "name": "Race", "unit_amount": 700, "currency": "INR", "stock": seats}
    assert (
        await stack.http.post("/admin/products", json=product, headers=stack.admin)
    ).status_code == 201

    async def one(i: int) -> tuple[str, str, str]:
        created = await stack.http.post(
            "/orders",
            json={"items": [{"sku": "RACE", "quantity": 1}], "provider": "razorpay"},
            headers=stack.user(f"racer{i}"),
        )
        assert created.status_code == 201, created.text
        order = created.json()
        if i % 2 == 0:
            # Confirmation first: sent in the last 0.3 s of the window, racing its timer.
            closes = datetime.fromisoformat(order["expires_at"]).timestamp()
            await asyncio.sleep(max(0.0, closes - random.uniform(0.0, 0.3) - time.time()))
        else:
            # Timeout first: sent the moment the window's cancel has committed.
            assert await window_outcome(stack, order["id"]) == "expired"
        tx = f"pay_race{i:03d}{uuid.uuid4().hex[:8]}"
        response = await stack.post(
            "/webhooks/razorpay", signed_confirmation("razorpay", order, tx)
        )
        assert response.json() == {"result": "accepted"}
        return order["id"], tx, "before" if i % 2 == 0 else "after"

    # Staggered starts, so windows close across a few seconds rather than all at one instant.
    async def staggered(i: int) -> tuple[str, str, str]:
        await asyncio.sleep(i * 0.04)
        return await one(i)

    raced = await asyncio.gather(*(staggered(i) for i in range(2 * RACES)))
    outcomes: dict[str, int] = {}
    for order_id, tx, side in raced:
        lifecycle = await window_outcome(stack, order_id)
        workflow_id = confirmation_workflow_id("razorpay", tx)
        order = await stack.order(order_id)
        if order["status"] == "paid":
            assert lifecycle == "paid"
            assert (await stack.result(workflow_id)).outcome == "paid"
            assert "OrderCancelled" not in await event_types(stack, order_id)
        else:
            assert (order["status"], lifecycle) == ("cancelled", "expired")
            state = await stack.wait_state(workflow_id, "needs_reconciliation", lambda s: s.parked)
            assert state.parked_as == "late_payment"
            assert "OrderPaid" not in await event_types(stack, order_id)
        key = f"{side}:{order['status']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    paid = sum(n for k, n in outcomes.items() if k.endswith(":paid"))
    async with stack.sessions() as s:
        stock = await s.scalar(select(Product.stock).where(Product.sku == "RACE"))
    assert stock == seats - paid, outcomes
    # Every late one parked; of the racing ones, at least some won (the invariant check
    # runs at teardown as always).
    assert outcomes.get("after:cancelled", 0) == RACES, outcomes
    assert outcomes.get("before:paid", 0) > 0, outcomes
    print("race outcomes:", outcomes)


async def test_event_feed_read_while_writers_commit_out_of_order_misses_none(
    stack: Stack,
) -> None:
    """Writers hold their transactions open for random times, so ids commit out of order; a
    reader following `next` the whole time sees every event exactly once, in a stable order."""
    writers, per_writer = 8, 25
    written: list[int] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for k in range(per_writer):
            async with stack.sessions.begin() as s:
                event_id = await s.scalar(
                    text(
                        "INSERT INTO events (type, payload, dedupe_key) "
                        "VALUES ('FeedTest', '{}'::jsonb, :key) RETURNING id"
                    ),
                    {"key": f"feed:{w}:{k}"},
                )
                await asyncio.sleep(random.uniform(0, 0.05))
            written.append(int(event_id))

    seen: list[int] = []

    async def reader() -> None:
        after = "0"
        while True:
            finished = done.is_set()
            page = await stack.http.get(f"/events?after={after}&limit=7", headers=stack.admin)
            assert page.status_code == 200, page.text
            body = page.json()
            seen.extend(e["id"] for e in body["events"])
            after = body["next"]
            if finished and not body["events"]:
                return
            if not body["events"]:
                await asyncio.sleep(0.01)

    read = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    await read
    assert len(written) == writers * per_writer
    assert sorted(seen) == sorted(written)  # none missed, none twice
    # Reading again from the start gives the same sequence: ids and order are stable.
    again: list[int] = []
    after = "0"
    while True:
        body = (
            await stack.http.get(f"/events?after={after}&limit=500", headers=stack.admin)
        ).json()
        if not body["events"]:
            break
        again.extend(e["id"] for e in body["events"])
        after = body["next"]
    assert again == seen
    # A bare event id works as a cursor, and a malformed one is a 400, not a 500.
    middle = seen[len(seen) // 2]
    rest = (await stack.http.get(f"/events?after={middle}&limit=500", headers=stack.admin)).json()
    assert [e["id"] for e in rest["events"]] == seen[len(seen) // 2 + 1 :]
    for bad in ("abc", "1.2.3", "99999999999999999999999.1", "-1"):
        assert (
            await stack.http.get(f"/events?after={bad}", headers=stack.admin)
        ).status_code == 400
    assert (await stack.http.get("/events", headers=stack.user())).status_code == 403


@pytest.mark.parametrize(
    "stack_env",
    [
        SHORT
        | {
            "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "1",
            "PAYSAGA_RETRY_FAST_MAX_SECONDS": "0.5",
            "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": "0.5",
            "PAYSAGA_RETRY_SLOW_MAX_SECONDS": "1",
        }
    ],
)
async def test_money_stored_in_the_window_is_not_cancelled_by_its_end(
    stack: Stack, refuse: Refuse
) -> None:
    """The payment is stored inside the window, but marking the order paid fails (5a) past
    the window's end. The window does not cancel an order whose money is stored, nor may the
    customer; once the database lets go, the order is paid and placed."""
    await refuse("orders", "UPDATE")
    order = await stack.place_order("razorpay")
    tx = f"pay_{uuid.uuid4().hex[:14]}"
    await stack.post("/webhooks/razorpay", signed_confirmation("razorpay", order, tx))
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "needs_reconciliation")
    closes = datetime.fromisoformat(order["expires_at"]).timestamp()
    await asyncio.sleep(max(0.0, closes - time.time()) + 1.5)  # the window's end has passed

    waiting = await stack.order(order["id"])
    assert (waiting["status"], waiting["payment"]["status"]) == ("awaiting_payment", "paid")
    cancel = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
    assert cancel.status_code == 409 and "being confirmed" in cancel.json()["detail"]

    await refuse.lift("orders", "UPDATE")
    assert (await stack.result(workflow_id)).outcome == "paid"
    assert await window_outcome(stack, order["id"]) == "paid"
    assert await event_types(stack, order["id"]) == [
        "OrderCreated",
        "PaymentConfirmed",
        "OrderPaid",
        "OrderPlaced",
    ]
