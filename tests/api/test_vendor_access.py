"""Vendors as callers (issue 28): a vendor token is its own kind of caller. It cannot act as a
customer (403 on the customer's routes, so a vendor id never passes for a customer id spelled
the same), and the plain functions the stream authenticates with tell an invalid token from
a valid one that is not a vendor's."""

from __future__ import annotations

import jwt
import pytest

from api.auth import Role, caller_of, make_token, vendor_of
from paysaga.cli import main as paysaga
from tests.support.signing import SECRETS
from tests.support.stack import Stack


def vendor(sub: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], sub, vendor=True)}"}


async def test_a_vendor_token_is_refused_on_the_customers_routes(stack: Stack) -> None:
    order = await stack.place_order("standard")
    sku = order["items"][0]["sku"]
    new_order = {"items": [{"sku": sku, "quantity": 1}], "provider": "standard"}
    # Even a vendor whose id is the customer's: a vendor token is never a customer's.
    for headers in (vendor("acme"), vendor("alice")):
        for method, path, body in (
            ("POST", "/orders", new_order),
            ("GET", f"/orders/{order['id']}", None),
            ("POST", f"/orders/{order['id']}/cancel", None),
            ("POST", f"/orders/{order['id']}/refund", None),
            ("GET", f"/orders/{order['id']}/ticket", None),
            ("POST", "/admin/products", {"sku": "V1", "name": "x", "unit_amount": 1}),
            ("GET", "/events", None),
        ):
            answer = await stack.http.request(method, path, json=body, headers=headers)
            assert answer.status_code == 403, (method, path, answer.text)
    # Nothing was placed or changed by them.
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert (await stack.http.get(f"/orders/{order['id']}", headers=stack.user())).is_success


def test_the_stream_can_tell_invalid_from_not_a_vendor() -> None:
    secret = SECRETS["jwt"]
    assert vendor_of(secret, make_token(secret, "acme", vendor=True)) == "acme"
    customer = caller_of(secret, make_token(secret, "alice"))
    admin = caller_of(secret, make_token(secret, "ops", admin=True))
    assert customer is not None and customer.role == Role.CUSTOMER
    assert admin is not None and admin.role == Role.ADMIN and admin.is_admin
    assert vendor_of(secret, make_token(secret, "alice")) is None  # valid, not a vendor: 4403
    assert caller_of(secret, "not-a-token") is None  # invalid: 4401
    forged = jwt.encode({"sub": "acme", "role": "vendor", "exp": 2**31}, "x" * 32, "HS256")
    assert caller_of(secret, forged) is None
    assert caller_of(None, make_token(secret, "acme", vendor=True)) is None  # no secret


def test_vendor_tokens_are_minted_for_vendor_ids_only() -> None:
    with pytest.raises(ValueError, match="vendor id"):
        make_token(SECRETS["jwt"], "acme corp", vendor=True)
    with pytest.raises(ValueError, match="not both"):
        make_token(SECRETS["jwt"], "acme", vendor=True, admin=True)
    with pytest.raises(ValueError, match="cannot start"):
        make_token(SECRETS["jwt"], "vendor:acme", vendor=True)


def test_paysaga_token_vendor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAYSAGA_JWT_SECRET", SECRETS["jwt"])
    monkeypatch.setenv("PAYSAGA_DATA_DIR", "/nonexistent-paysaga-dir")
    paysaga(["token", "acme", "--vendor"])
    token = capsys.readouterr().out.strip()
    assert vendor_of(SECRETS["jwt"], token) == "acme"
    with pytest.raises(SystemExit):
        paysaga(["token", "acme", "--vendor", "--admin"])  # one role or the other
