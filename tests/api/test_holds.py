"""What one customer may hold (issue 27, CONTRACT `PAYSAGA_MAX_HELD_PER_CUSTOMER`): past the
limit a checkout is a 429 `hold_limit` that reserves nothing, a cancel gives the allowance
back, a customer may place only so many orders a minute, and both hold when one customer's
checkouts race each other. Also: `/metrics` behind `PAYSAGA_METRICS_TOKEN`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Order
from tests.gateways.testpay import LEDGER, NAME
from tests.support.outcomes import stock_of
from tests.support.stack import Stack


@pytest.fixture
def stack_env(request: pytest.FixtureRequest) -> dict[str, str]:
    limits = {"PAYSAGA_MAX_HELD_PER_CUSTOMER": "5", "PAYSAGA_ORDERS_PER_MINUTE": "1000"}
    return limits | getattr(request, "param", {})


async def product(stack: Stack, stock: int = 100) -> str:
    sku = f"DROP-{uuid.uuid4().hex[:8]}"
    body = {"sku": sku, "name": "Drop", "unit_amount": 900, "currency": "EUR", "stock": stock}
    created = await stack.http.post("/admin/products", json=body, headers=stack.admin)
    assert created.status_code == 201, created.text
    return sku


async def checkout(stack: Stack, sku: str, quantity: int, who: str = "alice") -> httpx.Response:
    return await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": quantity}], "provider": "standard"},
        headers=stack.user(who),
    )


async def on_sale(stack: Stack, sku: str) -> int:
    return await stock_of(stack, {"items": [{"sku": sku}]})


async def orders_of(stack: Stack, who: str) -> int:
    async with stack.sessions() as s:
        found = await s.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id == who)
        )
    return int(found or 0)


async def test_past_the_hold_limit_nothing_is_reserved_and_a_cancel_gives_it_back(
    stack: Stack,
) -> None:
    sku = await product(stack)
    first = await checkout(stack, sku, 3)
    assert first.status_code == 201, first.text
    refused = await checkout(stack, sku, 3)
    assert refused.status_code == 429
    assert refused.json() == {
        "detail": "you hold 3 units awaiting payment; at most 5 at once",
        "error": "hold_limit",
        "held": 3,
        "limit": 5,
    }
    assert await on_sale(stack, sku) == 97  # the refused order reserved nothing
    assert await orders_of(stack, "alice") == 1
    assert (await checkout(stack, sku, 2)).status_code == 201  # up to the limit exactly
    assert (await checkout(stack, sku, 5, who="bob")).status_code == 201  # per customer
    cancel = await stack.http.post(f"/orders/{first.json()['id']}/cancel", headers=stack.user())
    assert cancel.status_code == 200
    again = await checkout(stack, sku, 3)
    assert again.status_code == 201, again.text
    assert await on_sale(stack, sku) == 100 - 2 - 5 - 3


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_MAX_HELD_PER_CUSTOMER": "3"}], indirect=True)
async def test_one_customer_racing_checkouts_gets_no_more_than_the_limit(stack: Stack) -> None:
    sku = await product(stack)
    answers = await asyncio.gather(*(checkout(stack, sku, 1) for _ in range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [429] * 5
    assert all(a.json()["error"] == "hold_limit" for a in answers if a.status_code == 429)
    assert await on_sale(stack, sku) == 97
    assert await orders_of(stack, "alice") == 3


@pytest.mark.parametrize(
    "stack_env",
    [{"PAYSAGA_MAX_HELD_PER_CUSTOMER": "1000", "PAYSAGA_ORDERS_PER_MINUTE": "3"}],
    indirect=True,
)
async def test_orders_a_minute_are_limited_per_customer_even_when_racing(stack: Stack) -> None:
    sku = await product(stack)
    answers = await asyncio.gather(*(checkout(stack, sku, 1) for _ in range(6)))
    refused: list[dict[str, Any]] = [a.json() for a in answers if a.status_code == 429]
    assert sorted(a.status_code for a in answers) == [201] * 3 + [429] * 3
    assert {r["error"] for r in refused} == {"rate_limit"} and refused[0]["limit"] == 3
    assert all(a.headers["retry-after"] == "60" for a in answers if a.status_code == 429)
    # A cancel does not give a place back: cancelling and placing again is what it limits.
    placed = next(a.json()["id"] for a in answers if a.status_code == 201)
    await stack.http.post(f"/orders/{placed}/cancel", headers=stack.user())
    assert (await checkout(stack, sku, 1)).status_code == 429
    assert (await checkout(stack, sku, 1, who="bob")).status_code == 201
    assert await on_sale(stack, sku) == 100 - 2 - 1


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_METRICS_TOKEN": "scrape-token"}], indirect=True)
async def test_metrics_answer_only_the_scrape_token(stack: Stack) -> None:
    assert (await stack.http.get("/metrics")).status_code == 401
    wrong = await stack.http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "paysaga_" not in wrong.text
    scraped = await stack.http.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert scraped.status_code == 200 and "paysaga_webhooks_total" in scraped.text


async def test_metrics_are_open_without_a_token(stack: Stack) -> None:
    assert (await stack.http.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    "stack_env",
    [{"PAYSAGA_MAX_HELD_PER_CUSTOMER": "1", "PAYSAGA_TESTPAY_ONLINE": "1"}],
    indirect=True,
)
async def test_online_a_customer_past_the_limit_costs_no_gateway_call(
    testpay: None, stack: Stack
) -> None:
    sku = await product(stack)
    body = {"items": [{"sku": sku, "quantity": 1}], "provider": NAME}
    first = await stack.http.post("/orders", json=body, headers=stack.user())
    assert first.status_code == 201, first.text
    intents = len(LEDGER.intents)
    refused = await stack.http.post("/orders", json=body, headers=stack.user())
    assert refused.status_code == 429 and refused.json()["error"] == "hold_limit"
    assert len(LEDGER.intents) == intents  # the gateway was never asked
