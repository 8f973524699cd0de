"""A vendor's acceptance on the real stack, offline mode (SEQ-BP-002, issue 28): a paid order
that needs it waits (`pending_vendor_acceptance`, visible in the Temporal UI), is accepted
(its ticket then) or rejected (refunded in full, stock back when the refund is done); one
vendor per order; another vendor's order is not found, a customer's token is refused; a race
between accept and reject ends in exactly one of them."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from db.models import AuditEntry, Event, Product, Refund
from tests.support.gateway_events import refund_notice
from tests.support.outcomes import count, refund_result, stock_of
from tests.support.stack import Stack
from tests.support.vendors import (
    confirmation,
    order_state,
    paid_vendor_order,
    place,
    vendor,
    vendor_product,
)

PENDING = "pending_vendor_acceptance"


async def trail(stack: Stack, order_id: str) -> list[tuple[str, str, Any]]:
    async with stack.sessions() as s:
        rows = await s.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail)
            .where(AuditEntry.order_id == order_id, AuditEntry.action.like("order.fulfil%"))
            .order_by(AuditEntry.id)
        )
        return [(actor, action, detail.get("to")) for actor, action, detail in rows]


async def test_accepted_the_order_gets_its_ticket(stack: Stack) -> None:
    order, tx = await paid_vendor_order(stack, "razorpay")
    assert (order["status"], order["vendor"], order["fulfilment"]) == ("paid", "acme", PENDING)
    assert order["accept_by"] is not None and order["ticket"] is None
    await order_state(stack, "razorpay", tx, PENDING)  # operators find it in the UI
    # No ticket while the vendor has not accepted.
    ticket = await stack.http.get(f"/orders/{order['id']}/ticket", headers=stack.user())
    assert ticket.status_code == 409
    listed = await stack.http.get(f"/vendor/orders?status={PENDING}", headers=vendor())
    assert [o["id"] for o in listed.json()["orders"]] == [order["id"]]

    accepted = await stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["fulfilment"] == "accepted"
    outcome = await asyncio.wait_for(confirmation(stack, "razorpay", tx).result(), 60)
    assert outcome.outcome == "paid" and outcome.ticket_code
    await order_state(stack, "razorpay", tx, "accepted")
    assert (await stack.order(order["id"]))["ticket"]["code"] == outcome.ticket_code
    ticket = await stack.http.get(f"/orders/{order['id']}/ticket", headers=stack.user())
    assert ticket.status_code == 200 and ticket.content.startswith(b"%PDF")
    # Answered once: a second accept, or a reject now, is refused and changes nothing.
    again = await stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
    late = await stack.http.post(
        f"/vendor/orders/{order['id']}/reject", json={"reason": "oops"}, headers=vendor()
    )
    assert (again.status_code, late.status_code) == (409, 409)
    assert "accepted already" in late.json()["detail"]
    assert await count(stack.sessions, Event, Event.type == "VendorAccepted") == 1
    assert await count(stack.sessions, Event, Event.type == "VendorRejected") == 0
    assert await trail(stack, order["id"]) == [
        ("paysaga", "order.fulfilment_changed", PENDING),
        ("vendor:acme", "order.fulfilment_changed", "accepted"),
    ]


async def test_rejected_the_order_is_refunded_in_full_and_its_stock_released(
    stack: Stack,
) -> None:
    order, tx = await paid_vendor_order(stack, "standard")
    assert await stock_of(stack, order) == 4
    rejected = await stack.http.post(
        f"/vendor/orders/{order['id']}/reject",
        json={"reason": "kitchen closed"},
        headers=vendor(),
    )
    assert rejected.status_code == 202, rejected.text
    body = rejected.json()
    assert (body["status"], body["fulfilment"], body["reject_reason"]) == (
        "paid",
        "rejected",
        "kitchen closed",
    )
    assert body["refund"]["status"] == "pending"
    assert body["refund"]["requested_by"] == "vendor:acme"
    assert body["refund"]["amount"] == order["amount"]
    # The confirmation ends without a ticket; the refund waits for the gateway (offline).
    outcome = await asyncio.wait_for(confirmation(stack, "standard", tx).result(), 60)
    assert outcome.outcome == "paid" and outcome.ticket_code is None
    await order_state(stack, "standard", tx, "rejected")
    assert await stock_of(stack, order) == 4  # released when the refund completes
    notice = refund_notice("standard", order, tx)
    assert (await stack.post("/webhooks/standard", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "standard", tx) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["fulfilment"], after["refund"]["status"]) == (
        "refunded",
        "rejected",
        "succeeded",
    )
    assert after["payment"]["status"] == "refunded"
    assert await stock_of(stack, order) == 5
    assert await trail(stack, order["id"]) == [
        ("paysaga", "order.fulfilment_changed", PENDING),
        ("vendor:acme", "order.fulfilment_changed", "rejected"),
    ]
    async with stack.sessions() as s:
        event = await s.scalar(select(Event).where(Event.type == "VendorRejected"))
    assert event is not None
    assert event.payload == {"vendor": "acme", "reason": "kitchen closed", "by": "vendor:acme"}


async def test_another_vendor_is_not_told_the_order_exists_and_customers_are_refused(
    stack: Stack,
) -> None:
    order, _ = await paid_vendor_order(stack, "razorpay")
    for path, body in (("accept", None), ("reject", {"reason": "not mine"})):
        url = f"/vendor/orders/{order['id']}/{path}"
        other = await stack.http.post(url, json=body, headers=vendor("globex"))
        customer = await stack.http.post(url, json=body, headers=stack.user())
        nobody = await stack.http.post(url, json=body)
        assert (other.status_code, customer.status_code, nobody.status_code) == (404, 403, 401)
    nope = await stack.http.post("/vendor/orders/nope/accept", headers=vendor())
    assert nope.status_code == 404
    listing = await stack.http.get("/vendor/orders", headers=vendor("globex"))
    assert listing.json() == {"orders": [], "next": None}
    peeking = await stack.http.get("/vendor/orders?vendor=acme", headers=vendor("globex"))
    assert peeking.status_code == 403
    assert (await stack.http.get("/vendor/orders", headers=stack.user())).status_code == 403
    # An admin may answer for any vendor, and sees every vendor's orders.
    admin_view = await stack.http.get("/vendor/orders?vendor=acme", headers=stack.admin)
    assert [o["id"] for o in admin_view.json()["orders"]] == [order["id"]]
    accepted = await stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=stack.admin)
    assert accepted.status_code == 200
    assert (await trail(stack, order["id"]))[-1] == (
        "admin:ops",
        "order.fulfilment_changed",
        "accepted",
    )
    assert (await stack.order(order["id"]))["fulfilment"] == "accepted"


async def test_one_vendor_per_order_and_nothing_reserved_otherwise(stack: Stack) -> None:
    acme, globex = await vendor_product(stack, "acme"), await vendor_product(stack, "globex")
    house = await vendor_product(stack, None, acceptance=False)
    house_too = await vendor_product(stack, None, acceptance=False)
    for skus in ((acme, globex), (acme, house)):
        mixed = await stack.http.post(
            "/orders",
            json={"items": [{"sku": s, "quantity": 1} for s in skus], "provider": "razorpay"},
            headers=stack.user(),
        )
        assert mixed.status_code == 409, mixed.text
        assert mixed.json()["error"] == "mixed_vendors"
    for sku in (acme, globex, house):
        async with stack.sessions() as s:
            assert await s.scalar(select(Product.stock).where(Product.sku == sku)) == 5
    # The organizer's own products mix freely, and need no acceptance.
    plain = await place(stack, "razorpay", house, house_too)
    assert (plain["vendor"], plain["fulfilment"], plain["accept_by"]) == (None, None, None)
    # A vendor's product that needs no acceptance: the order carries its vendor only.
    quick = await place(stack, "razorpay", await vendor_product(stack, "acme", acceptance=False))
    assert (quick["vendor"], quick["fulfilment"]) == ("acme", None)
    refused = await stack.http.post(f"/vendor/orders/{quick['id']}/accept", headers=vendor())
    assert refused.status_code == 409


async def test_accept_and_reject_racing_end_in_exactly_one(stack: Stack) -> None:
    orders = [await paid_vendor_order(stack, "razorpay") for _ in range(4)]

    async def both(order: dict[str, Any]) -> tuple[int, int]:
        url = f"/vendor/orders/{order['id']}"
        accepted, rejected = await asyncio.gather(
            stack.http.post(f"{url}/accept", headers=vendor()),
            stack.http.post(f"{url}/reject", json={"reason": "race"}, headers=vendor()),
        )
        return accepted.status_code, rejected.status_code

    results = await asyncio.gather(*(both(order) for order, _ in orders))
    for (order, tx), (accepted, rejected) in zip(orders, results, strict=True):
        assert sorted((accepted, rejected)) in ([200, 409], [202, 409]), (accepted, rejected)
        final = await stack.order(order["id"])
        winner = "accepted" if accepted == 200 else "rejected"
        assert final["fulfilment"] == winner
        async with stack.sessions() as s:
            events = (
                await s.scalars(
                    select(Event.type).where(
                        Event.order_id == order["id"], Event.type.like("Vendor%")
                    )
                )
            ).all()
            refunds = await count(stack.sessions, Refund, Refund.transaction_id == tx)
        assert events == ["VendorAccepted" if winner == "accepted" else "VendorRejected"]
        assert refunds == (1 if winner == "rejected" else 0)
        outcome = await asyncio.wait_for(confirmation(stack, "razorpay", tx).result(), 60)
        assert bool(outcome.ticket_code) == (winner == "accepted")


async def test_the_vendors_list_pages_newest_first(stack: Stack) -> None:
    first, _ = await paid_vendor_order(stack, "razorpay")
    second, _ = await paid_vendor_order(stack, "razorpay")
    third, _ = await paid_vendor_order(stack, "razorpay")
    unpaid = await place(stack, "razorpay", await vendor_product(stack, "acme"))
    await stack.http.post(f"/vendor/orders/{second['id']}/accept", headers=vendor())
    page = (await stack.http.get("/vendor/orders?limit=2", headers=vendor())).json()
    assert [o["id"] for o in page["orders"]] == [third["id"], second["id"]]
    rest = await stack.http.get(f"/vendor/orders?limit=2&after={page['next']}", headers=vendor())
    assert [o["id"] for o in rest.json()["orders"]] == [first["id"]]
    assert rest.json()["next"] is None
    assert unpaid["id"] not in {o["id"] for o in page["orders"] + rest.json()["orders"]}
    accepted = await stack.http.get("/vendor/orders?status=accepted", headers=vendor())
    assert [o["id"] for o in accepted.json()["orders"]] == [second["id"]]
    bad = await stack.http.get("/vendor/orders?after=not-an-id", headers=vendor())
    assert bad.status_code == 400
    unknown_status = await stack.http.get("/vendor/orders?status=lost", headers=vendor())
    assert unknown_status.status_code == 422
