"""Stripe answering 500 and 429, through a proxy in front of localstripe that keeps a 500 under
its idempotency key as Stripe does (`tests.support.localstripe.FaultyStripe`).

- A create whose key holds a 500 is made again under a fresh key: an intent the failed request
  may have made was never handed to anyone, so nobody can pay it.
- A refund whose answer was lost as a 500 is looked up before anything is asked again: one
  refund at Stripe, and the activity's retry with the same key gets the same refund.
- A 429 is waited out (Retry-After) and never opens the breaker; 500s do.
"""

from __future__ import annotations

import asyncio

import pytest

from gateways.api import CLOSED, OPEN, GatewayUnavailable
from gateways.stripe.api import StripeApi
from tests.support.localstripe import (
    API_KEY,
    Fault,
    FaultyStripe,
    pay_with_card,
    stripe_client,
)

INTENTS, REFUNDS = "/v1/payment_intents", "/v1/refunds"


def api(proxy: FaultyStripe) -> StripeApi:
    return StripeApi(API_KEY, proxy.url, timeout=5)


async def test_a_create_that_got_a_500_is_made_again_under_a_fresh_key(
    proxy: FaultyStripe, localstripe: str
) -> None:
    proxy.faults.append(Fault(INTENTS))
    made = await api(proxy).create_intent("order-500", 49900, "EUR")
    keys = proxy.keys(INTENTS)
    assert [status for _, status in keys] == [500, 200]
    assert keys[0][0] == "checkout-order-500"
    assert keys[1][0] is not None and keys[1][0].startswith("checkout-order-500:")
    intent = await asyncio.to_thread(
        stripe_client(localstripe).v1.payment_intents.retrieve, made.intent_id
    )
    assert (intent.amount, intent.metadata["order_id"]) == (49900, "order-500")


async def test_a_refund_whose_answer_was_lost_is_looked_up_not_made_twice(
    proxy: FaultyStripe, localstripe: str
) -> None:
    client = stripe_client(localstripe)
    paid = await asyncio.to_thread(
        client.v1.payment_intents.create, {"amount": 2500, "currency": "eur"}
    )
    assert await pay_with_card(localstripe, paid.id) == "succeeded"
    # Stripe refunds, and the answer is a 500 (saved under the key, as Stripe does).
    proxy.faults.append(Fault(REFUNDS, after=True))
    gateway = api(proxy)
    refund = await gateway.refund(paid.id, 2500, "EUR", "refund-key-1")
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 2500, "EUR")
    # The activity's retry with the same key: the saved 500 again, then the same refund.
    again = await gateway.refund(paid.id, 2500, "EUR", "refund-key-1")
    assert again.id == refund.id
    refunds = await asyncio.to_thread(client.v1.refunds.list, {"payment_intent": paid.id})
    assert [(r.id, r.amount) for r in refunds.data] == [(refund.id, 2500)]
    assert [key for key, _ in proxy.keys(REFUNDS)] == ["refund-key-1", "refund-key-1"]


async def test_rate_limits_are_waited_out_and_never_open_the_breaker(
    proxy: FaultyStripe,
) -> None:
    gateway = api(proxy)
    proxy.faults.append(Fault(INTENTS, status=429, times=2, retry_after="0.1"))
    made = await gateway.create_intent("order-429", 1000, "EUR")
    assert made.intent_id.startswith("pi_")
    assert [status for _, status in proxy.keys(INTENTS)] == [429, 429, 200]
    for n in range(8):  # rate limited past the waits: 503 each time, breaker closed
        proxy.faults.append(Fault(INTENTS, status=429, times=3, retry_after="0"))
        with pytest.raises(GatewayUnavailable, match="rate limited"):
            await gateway.create_intent(f"order-busy-{n}", 1000, "EUR")
    assert gateway.calls.breaker.state == CLOSED


async def test_server_errors_open_the_breaker(proxy: FaultyStripe) -> None:
    gateway = api(proxy)
    for n in range(5):
        proxy.faults.append(Fault(INTENTS, times=2))  # the first key and the fresh one
        with pytest.raises(GatewayUnavailable):
            await gateway.create_intent(f"order-down-{n}", 1000, "EUR")
    assert gateway.calls.breaker.state == OPEN
    calls = len(proxy.seen)
    with pytest.raises(GatewayUnavailable, match="not calling it"):
        await gateway.create_intent("order-after", 1000, "EUR")
    assert len(proxy.seen) == calls  # Stripe not asked while open
