"""The typed HTTP contract: request bodies refuse fields they do not declare (a 422 naming
each), and the answers are exactly their response models (no field missing, none extra)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from api.errors import ErrorBody
from db.models import Order, Product
from domain.views import OrderView, PlacedOrderView
from tests.support.stack import Stack


def refused_fields(response: httpx.Response) -> set[str]:
    """The fields a 422 names as not allowed (the last part of each error's location)."""
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["detail"]
    assert all(e["type"] == "extra_forbidden" for e in errors), errors
    return {str(e["loc"][-1]) for e in errors}


def product(sku: str, **extra: object) -> dict[str, object]:
    return {"sku": sku, "name": sku, "unit_amount": 100, "currency": "EUR", "stock": 5} | extra


async def test_a_product_with_an_unknown_field_is_refused_and_not_stored(stack: Stack) -> None:
    sku = f"SEAT-{uuid.uuid4().hex[:6]}"
    answer = await stack.http.post(
        "/admin/products", json=product(sku, colour="red"), headers=stack.admin
    )
    assert refused_fields(answer) == {"colour"}
    async with stack.sessions() as s:
        assert await s.scalar(select(Product).where(Product.sku == sku)) is None
    # The same product without it is taken, and answered as it was sent.
    answer = await stack.http.post("/admin/products", json=product(sku), headers=stack.admin)
    assert (answer.status_code, answer.json()) == (
        201,
        product(sku, vendor=None, requires_acceptance=False),
    )


async def test_unknown_fields_are_refused_at_any_depth(stack: Stack) -> None:
    sku = f"SEAT-{uuid.uuid4().hex[:6]}"
    assert (
        await stack.http.post("/admin/products", json=product(sku), headers=stack.admin)
    ).status_code == 201
    answer = await stack.http.post(
        "/orders",
        json={
            "items": [{"sku": sku, "quantity": 1, "qty": 2}],
            "provider": "stripe",
            "coupon": "FREE",
            "attendee": {"name": "Ada", "email": "ada@example.com", "phone": "1"},
        },
        headers=stack.user(),
    )
    assert refused_fields(answer) == {"qty", "coupon", "phone"}
    async with stack.sessions() as s:
        assert (await s.scalars(select(Order))).all() == []

    order = await stack.place_order("stripe")
    for path, body, unknown in (
        (f"/orders/{order['id']}/refund", {"reason": "late", "amount": 5}, "amount"),
        (f"/orders/{order['id']}/payments", {"provider": "stripe", "method": "card"}, "method"),
        ("/admin/products/NOPE/withdraw", {"quantity": 1, "reason": "lost", "all": 1}, "all"),
        ("/admin/payments/razorpay/pay_x/resolve", {"note": "done", "by": "me"}, "by"),
    ):
        answer = await stack.http.post(path, json=body, headers=stack.admin)
        assert refused_fields(answer) == {unknown}, path


def same_json(model: type[OrderView], body: dict[str, Any]) -> None:
    """`body` is exactly the model: every field there, none undeclared, values as it writes
    them (times as `+00:00`, as they were always written)."""
    assert model.model_validate(body).model_dump(mode="json") == body


async def test_orders_are_answered_as_their_models(stack: Stack) -> None:
    placed = await stack.place_order("razorpay")
    same_json(PlacedOrderView, placed)
    assert "client_secret" not in placed["payment"]  # offline: no key, so not sent
    assert placed["created_at"].endswith("+00:00")
    assert datetime.fromisoformat(placed["expires_at"]) > datetime.fromisoformat(
        placed["created_at"]
    )
    same_json(OrderView, await stack.order(placed["id"]))
    cancelled = await stack.http.post(f"/orders/{placed['id']}/cancel", headers=stack.user())
    same_json(OrderView, cancelled.json())
    assert cancelled.json()["cancel_reason"] == "customer"


async def test_errors_carry_the_documented_body(stack: Stack) -> None:
    answer = await stack.http.post(
        "/orders",
        json={"items": [{"sku": "NOPE-1", "quantity": 1}], "provider": "razorpay"},
        headers=stack.user(),
    )
    assert answer.status_code == 409
    body = answer.json()
    assert ErrorBody.model_validate(body).unavailable == ["NOPE-1"]
    missing = await stack.http.get(f"/orders/{uuid.uuid4()}", headers=stack.user())
    assert (missing.status_code, missing.json()) == (404, {"detail": "no such order"})
