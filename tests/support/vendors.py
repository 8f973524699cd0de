"""Vendors on the real stack (issue 28): their tokens, their products, an order of them paid
by its gateway's webhook, and where its acceptance stands in the database and in Temporal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import WorkflowHandle

from api.auth import make_token
from domain.payments import ConfirmationOutcome, confirmation_workflow_id
from domain.workflow_names import ORDER_STATE
from tests.support.gateway_events import signed_confirmation, transaction_of
from tests.support.signing import SECRETS
from tests.support.stack import Stack


def vendor(sub: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], sub, vendor=True)}"}


async def vendor_product(
    stack: Stack,
    of: str | None = "acme",
    *,
    acceptance: bool = True,
    stock: int = 5,
    currency: str = "INR",
) -> str:
    sku = f"V-{uuid.uuid4().hex[:8]}"
    product: dict[str, Any] = {
        "sku": sku,
        "name": "Dinner for two",
        "unit_amount": 49900,
        "currency": currency,
        "stock": stock,
        "vendor": of,
    }
    if acceptance:
        product["requires_acceptance"] = True
    created = await stack.http.post("/admin/products", json=product, headers=stack.admin)
    assert created.status_code == 201, created.text
    return sku


async def place(
    stack: Stack, provider: str, *skus: str, attendee: dict[str, str] | None = None
) -> dict[str, Any]:
    answer = await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": 1} for sku in skus], "provider": provider}
        | ({"attendee": attendee} if attendee else {}),
        headers=stack.user(),
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def paid_vendor_order(
    stack: Stack,
    provider: str = "razorpay",
    of: str = "acme",
    attendee: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """An order of one product of `of` that needs acceptance, paid by its gateway's signed
    webhook, once it reads pending: the order as it reads then, and its transaction."""
    order = await place(stack, provider, await vendor_product(stack, of), attendee=attendee)
    tx = transaction_of(provider, order, f"tx_{uuid.uuid4().hex[:12]}")
    sent = await stack.post(f"/webhooks/{provider}", signed_confirmation(provider, order, tx))
    assert sent.json() == {"result": "accepted"}
    return await until_fulfilment(stack, order["id"], "pending_vendor_acceptance"), tx


async def until_fulfilment(stack: Stack, order_id: str, fulfilment: str) -> dict[str, Any]:
    for _ in range(300):
        order = await stack.order(order_id)
        if order["fulfilment"] == fulfilment:
            return order
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} never {fulfilment}: {order}")


def confirmation(stack: Stack, provider: str, tx: str) -> WorkflowHandle[Any, ConfirmationOutcome]:
    return stack.client.get_workflow_handle(
        confirmation_workflow_id(provider, tx), result_type=ConfirmationOutcome
    )


async def order_state(stack: Stack, provider: str, tx: str, expected: str) -> None:
    """Waits for the confirmation's `OrderState` search attribute to read `expected`."""
    handle = confirmation(stack, provider, tx)
    for _ in range(200):
        if (await handle.describe()).typed_search_attributes.get(ORDER_STATE) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never had OrderState {expected}")
