"""A fourth gateway, defined in the tests alone (`tests.gateways.testpay`) and installed by one
`register` line, goes end to end on the real stack: checkout creates its intent, its webhook
confirms, its checkout return confirms, the look-up finds a payment whose webhook never came,
and a refund goes through its API. No product file knows its name."""

from __future__ import annotations

import asyncio

import pytest

from domain.payments import confirmation_workflow_id, refund_workflow_id
from gateways import registry
from tests.gateways.testpay import LEDGER, NAME, event, sign
from tests.support.outcomes import ONE_CONFIRMATION, effects, window_outcome
from tests.support.stack import Stack

SECRET = "testpay-webhook-secret"


@pytest.fixture
def stack_env(testpay: None, request: pytest.FixtureRequest) -> dict[str, str]:
    online = {"PAYSAGA_TESTPAY_WEBHOOK_SECRETS": SECRET, "PAYSAGA_TESTPAY_ONLINE": "1"}
    return online | getattr(request, "param", {})


async def test_checkout_webhook_and_refund_through_its_api(stack: Stack) -> None:
    order = await stack.place_order(NAME, amount=2500, currency="EUR")
    intent = order["payment"]["intent_id"]
    assert LEDGER.intents[intent] == {
        "order_id": order["id"],
        "amount": 2500,
        "currency": "EUR",
        "status": "open",
    }
    assert order["payment"]["client_secret"] == f"{intent}_secret"
    payment_id = LEDGER.pay(intent)
    body = event("charge.succeeded", payment_id, intent, 2500, "EUR")
    headers = {"X-Testpay-Signature": "0" * 64, "Content-Type": "application/json"}
    forged = await stack.http.post(f"/webhooks/{NAME}", content=body, headers=headers)
    assert forged.status_code == 401
    headers["X-Testpay-Signature"] = sign(body, SECRET)
    answer = await stack.http.post(f"/webhooks/{NAME}", content=body, headers=headers)
    assert answer.json() == {"result": "accepted"}
    again = await stack.http.post(f"/webhooks/{NAME}", content=body, headers=headers)
    assert again.json() == {"result": "duplicate"}
    await stack.result(confirmation_workflow_id(NAME, payment_id))
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION

    asked = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert asked.status_code == 202
    handle = stack.client.get_workflow_handle(refund_workflow_id(NAME, payment_id))
    assert await asyncio.wait_for(handle.result(), timeout=60) == "succeeded"
    after = await stack.order(order["id"])
    assert (after["status"], after["refund"]["status"]) == ("refunded", "succeeded")
    refunds = [r for r in LEDGER.refunds.values() if r["charge"] == payment_id]
    assert [(r["amount"], r["currency"]) for r in refunds] == [(2500, "EUR")]


async def test_checkout_return_confirms_what_the_gateway_reports(stack: Stack) -> None:
    order = await stack.place_order(NAME, amount=700, currency="EUR")
    intent = order["payment"]["intent_id"]
    early = await stack.http.post(
        f"/payments/{NAME}/verify", json={"intent": intent}, headers=stack.user()
    )
    assert early.status_code == 409  # not paid at the gateway yet
    stranger = await stack.http.post(
        f"/payments/{NAME}/verify", json={"intent": intent}, headers=stack.user("mallory")
    )
    assert stranger.status_code == 404
    payment_id = LEDGER.pay(intent)
    back = await stack.http.post(
        f"/payments/{NAME}/verify", json={"intent": intent}, headers=stack.user()
    )
    assert back.status_code == 200 and back.json()["status"] == "paid"
    await stack.result(confirmation_workflow_id(NAME, payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_PAYMENT_WINDOW_SECONDS": "4"}], indirect=True)
async def test_a_payment_whose_webhook_never_came_is_found_by_the_look_up(stack: Stack) -> None:
    order = await stack.place_order(NAME)
    payment_id = LEDGER.pay(order["payment"]["intent_id"])  # no webhook, no return
    assert await window_outcome(stack, order["id"]) == "paid"
    assert (await stack.order(order["id"]))["status"] == "paid"
    await stack.result(confirmation_workflow_id(NAME, payment_id))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_an_unregistered_gateway_is_refused_at_checkout(stack: Stack) -> None:
    registry.unregister(NAME)
    answer = await stack.http.post(
        "/orders",
        json={"items": [{"sku": "X", "quantity": 1}], "provider": NAME},
        headers=stack.user(),
    )
    assert answer.status_code == 422 and "must be one of the gateways" in answer.text
