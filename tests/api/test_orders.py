"""Products, orders and auth on real PostgreSQL."""

from __future__ import annotations

import jwt
import pytest
from sqlalchemy import select

from db.models import Order, Product
from tests.support.stack import Stack


async def test_order_reserves_stock_and_starts_a_pending_payment(stack: Stack) -> None:
    order = await stack.place_order("razorpay", amount=1500, currency="INR", stock=3)
    assert order["status"] == "awaiting_payment"
    assert (order["amount"], order["currency"]) == (1500, "INR")
    assert order["payment"]["status"] == "pending"
    assert order["payment"]["intent_id"].startswith("order_")
    async with stack.sessions() as s:
        product = await s.scalar(select(Product))
    assert product is not None and product.stock == 2


@pytest.mark.parametrize(("provider", "prefix"), [("stripe", "pi_"), ("standard", "int_")])
async def test_offline_intent_ids_have_the_gateways_shape(
    stack: Stack, provider: str, prefix: str
) -> None:
    order = await stack.place_order(provider)
    assert order["payment"]["intent_id"].startswith(prefix)


async def test_out_of_stock_reserves_nothing(stack: Stack) -> None:
    for sku, seats in (("SEAT-A", 5), ("SEAT-B", 1)):
        product = {"sku": sku, "name": sku, "unit_amount": 100, "currency": "EUR", "stock": seats}
        assert (
            await stack.http.post("/admin/products", json=product, headers=stack.admin)
        ).status_code == 201
    response = await stack.http.post(
        "/orders",
        json={
            "items": [{"sku": "SEAT-A", "quantity": 2}, {"sku": "SEAT-B", "quantity": 2}],
            "provider": "stripe",
        },
        headers=stack.user(),
    )
    assert response.status_code == 409
    assert "SEAT-B" in response.json()["detail"]
    async with stack.sessions() as s:
        stock = dict((await s.execute(select(Product.sku, Product.stock))).tuples().all())
        orders = (await s.scalars(select(Order))).all()
    assert stock == {"SEAT-A": 5, "SEAT-B": 1}
    assert orders == []


async def test_unknown_sku_is_409(stack: Stack) -> None:
    response = await stack.http.post(
        "/orders",
        json={"items": [{"sku": "NOPE", "quantity": 1}], "provider": "razorpay"},
        headers=stack.user(),
    )
    assert response.status_code == 409


@pytest.mark.parametrize("unit_amount", [12.5, "1200", -1, True])
async def test_money_must_be_integer_minor_units(stack: Stack, unit_amount: object) -> None:
    product = {"sku": "BAD", "name": "x", "unit_amount": unit_amount, "currency": "EUR", "stock": 1}
    response = await stack.http.post("/admin/products", json=product, headers=stack.admin)
    assert response.status_code == 422
    async with stack.sessions() as s:
        assert (await s.scalars(select(Product))).all() == []


async def test_duplicate_sku_is_409_and_keeps_the_first(stack: Stack) -> None:
    product = {"sku": "DUP", "name": "first", "unit_amount": 100, "currency": "EUR", "stock": 1}
    await stack.http.post("/admin/products", json=product, headers=stack.admin)
    response = await stack.http.post(
        "/admin/products", json=product | {"name": "second"}, headers=stack.admin
    )
    assert response.status_code == 409
    async with stack.sessions() as s:
        assert (await s.scalars(select(Product.name))).all() == ["first"]


async def test_auth(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    path = f"/orders/{order['id']}"
    assert (await stack.http.get(path)).status_code == 401
    forged = jwt.encode({"sub": "alice"}, "wrong-secret", algorithm="HS256")
    assert (
        await stack.http.get(path, headers={"Authorization": f"Bearer {forged}"})
    ).status_code == 401
    assert (await stack.http.get(path, headers=stack.user("alice"))).status_code == 200
    assert (await stack.http.get(path, headers=stack.user("mallory"))).status_code == 404
    assert (await stack.http.get("/orders/not-a-uuid", headers=stack.user())).status_code == 404
    product = {"sku": "X1", "name": "x", "unit_amount": 1, "currency": "EUR", "stock": 1}
    assert (
        await stack.http.post("/admin/products", json=product, headers=stack.user())
    ).status_code == 403
    assert (await stack.http.get("/admin/reconciliation", headers=stack.user())).status_code == 403


async def test_health(stack: Stack) -> None:
    assert (await stack.http.get("/healthz")).json() == {"status": "ok"}
    ready = await stack.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "database": "ok",
        "schema_revision": "ok",
        "temporal": "ok",
        "search_attributes": "ok",
    }


async def test_attach_to_unknown_workflow_is_404(stack: Stack) -> None:
    response = await stack.http.post(
        "/admin/payments/razorpay/pay_Nothing/attach",
        json={"order_id": "00000000-0000-0000-0000-000000000000"},
        headers=stack.admin,
    )
    assert response.status_code == 404
    bad = await stack.http.post(
        "/admin/payments/razorpay/pay_Nothing/attach", json={}, headers=stack.admin
    )
    assert bad.status_code == 400


async def test_the_checkout_answer_reads_as_the_order_does(stack: Stack) -> None:
    """The answer is built from what the checkout wrote, not read back: it must say exactly
    what `GET /orders/{id}` says right after."""
    order = await stack.place_order(
        "razorpay", attendee={"name": "Zoë", "email": "zoe@mail.pycon-attendees.org"}
    )
    read = await stack.http.get(f"/orders/{order['id']}", headers=stack.user())
    assert read.status_code == 200
    assert order == read.json()
