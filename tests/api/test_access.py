"""The access matrix: every route against every kind of caller. Users see and change only
their own orders (another's is 404, so its existence is not told), admin routes refuse users
(403), and webhooks ignore bearer tokens entirely (only the gateway's signature counts)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from api.auth import REFUSED, make_token
from db.models import Order
from tests.support.signing import SECRETS, razorpay_payment_event
from tests.support.stack import Stack

CALLERS = ("none", "expired", "bad signature", "no exp", "user A", "user B", "admin")
ANONYMOUS = ("none", "expired", "bad signature", "no exp")


def token_for(caller: str) -> dict[str, str]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "exp": now + 600}
    secret = SECRETS["jwt"]
    if caller == "none":
        return {}
    if caller == "expired":
        claims["exp"] = now - 10
    elif caller == "bad signature":
        secret = "not-the-secret-0123456789abcdef0123456789"
    elif caller == "no exp":
        del claims["exp"]
    elif caller == "user B":
        claims["sub"] = "bob"
    elif caller == "admin":
        claims |= {"sub": "ops", "role": "admin"}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


Call = Callable[[Stack, dict[str, str]], Awaitable[int]]


async def _order(stack: Stack) -> dict[str, Any]:
    return await stack.place_order("razorpay")  # owned by alice (user A)


def route(method: str, path: str, body: Any = None) -> Call:
    async def call(stack: Stack, headers: dict[str, str]) -> int:
        order = await _order(stack)
        url = path.format(order=order["id"], sku=f"S-{uuid.uuid4().hex[:8]}")
        payload = body(order) if callable(body) else body
        response = await stack.http.request(method, url, json=payload, headers=headers)
        return response.status_code

    return call


PRODUCT = {"sku": "{sku}", "name": "x", "unit_amount": 100, "currency": "EUR", "stock": 1}


def _product(_: dict[str, Any]) -> dict[str, Any]:
    return PRODUCT | {"sku": f"P-{uuid.uuid4().hex[:8]}"}


def _new_order(order: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"sku": order["items"][0]["sku"], "quantity": 1}], "provider": "stripe"}


def _unsigned_webhook(order: dict[str, Any]) -> dict[str, Any]:
    return razorpay_payment_event(order["payment"]["intent_id"], "pay_bearer", order["amount"])


# route: (its call, expected status per caller kind: anonymous, user A, user B, admin)
MATRIX: dict[str, tuple[Call, tuple[int, int, int, int]]] = {
    "POST /admin/products": (route("POST", "/admin/products", _product), (401, 403, 403, 201)),
    "POST /orders": (route("POST", "/orders", _new_order), (401, 201, 201, 201)),
    "GET /orders/{id}": (route("GET", "/orders/{order}"), (401, 200, 404, 200)),
    "POST /orders/{id}/cancel": (route("POST", "/orders/{order}/cancel"), (401, 200, 404, 200)),
    # A pending attempt exists: a new one is refused (409) for whoever may see the order.
    "POST /orders/{id}/payments": (
        route("POST", "/orders/{order}/payments", {}),
        (401, 409, 404, 409),
    ),
    "GET /admin/reconciliation": (route("GET", "/admin/reconciliation"), (401, 403, 403, 200)),
    "POST /admin/payments/.../resolve": (
        route(
            "POST",
            "/admin/payments/razorpay/pay_nothing/resolve",
            {"request_id": "r1", "note": "x"},
        ),
        (401, 403, 403, 404),
    ),
    "GET /admin/audit": (route("GET", "/admin/audit?order_id={order}"), (401, 403, 403, 200)),
    "GET /events": (route("GET", "/events"), (401, 403, 403, 200)),
    # Webhooks: a bearer token is not a signature, whoever's it is.
    "POST /webhooks/razorpay": (
        route("POST", "/webhooks/razorpay", _unsigned_webhook),
        (401, 401, 401, 401),
    ),
    "GET /healthz": (route("GET", "/healthz"), (200, 200, 200, 200)),
}


def expected(statuses: tuple[int, int, int, int], caller: str) -> int:
    if caller in ANONYMOUS:
        return statuses[0]
    return statuses[("user A", "user B", "admin").index(caller) + 1]


async def test_every_route_against_every_caller(stack: Stack) -> None:
    wrong = []
    cells = 0
    for name, (call, statuses) in MATRIX.items():
        for caller in CALLERS:
            got = await call(stack, token_for(caller))
            cells += 1
            if got != expected(statuses, caller):
                wrong.append(f"{name} as {caller}: {got}, expected {expected(statuses, caller)}")
    assert wrong == [], "\n".join(wrong)
    assert cells == len(MATRIX) * len(CALLERS)
    print(f"access matrix: {cells} cells")


async def test_a_refusal_says_nothing_about_why_or_the_setup(stack: Stack) -> None:
    for caller in ANONYMOUS:
        response = await stack.http.get("/events", headers=token_for(caller))
        assert response.status_code == 401
        assert response.json() == {"detail": "missing or invalid bearer token"}


async def test_authentication_comes_before_the_body_is_read(stack: Stack) -> None:
    junk = b"{" * 200_000  # not JSON: parsing it first would answer 422
    headers = {"Content-Type": "application/json"}
    anonymous = await stack.http.post("/orders", content=junk, headers=headers)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "missing or invalid bearer token"}
    known = await stack.http.post("/orders", content=junk, headers=headers | stack.user())
    assert known.status_code == 422  # authenticated: now the body is read, and refused


@pytest.mark.parametrize("sub", ["system:late_payment", "admin:ops", "Vendor:acme", "gateway:x"])
async def test_a_customer_cannot_pass_for_another_kind_of_actor(stack: Stack, sub: str) -> None:
    """Actors are told apart by prefix in the audit trail and the rules (`admin:ops`,
    `system:late_payment`): a token whose `sub` carries one is refused, so no customer's
    action reads as the system's or an admin's."""
    forged = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, SECRETS["jwt"], "HS256")
    order = await stack.http.post(
        "/orders",
        json={"items": [{"sku": "X", "quantity": 1}], "provider": "standard"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert order.status_code == 401 and order.json() == {"detail": REFUSED}
    with pytest.raises(ValueError, match="cannot start with"):
        make_token(SECRETS["jwt"], sub)
    async with stack.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Order)) == 0
