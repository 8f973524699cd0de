"""Razorpay's API client against our Razorpay test server answering 5xx and 429: look-ups and
refunds are retried (refunds under the same `X-Refund-Idempotency` key, so a refund whose
answer was lost is not made twice), creates are not; rate limits wait out Retry-After and
never open the breaker; server errors do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.payments import Confirmation
from gateways.api import CLOSED, OPEN, GatewayUnavailable
from gateways.razorpay.api import RazorpayApi
from tests.support.razorpay_server import RazorpayApiServer, running_razorpay

KEY_ID, KEY_SECRET = "rzp_test_paysaga", "rzp_test_secret_for_the_api"


@pytest.fixture
def server() -> Iterator[RazorpayApiServer]:
    yield from running_razorpay(KEY_ID, KEY_SECRET)


@pytest.fixture
def api(server: RazorpayApiServer) -> RazorpayApi:
    return RazorpayApi(KEY_ID, KEY_SECRET, server.url)


async def paid_order(api: RazorpayApi, server: RazorpayApiServer) -> tuple[str, str]:
    intent = await api.create_intent("order-1", 49900, "INR")
    return intent.intent_id, server.pay(intent.intent_id)


async def test_a_look_up_is_retried_through_server_errors(
    api: RazorpayApi, server: RazorpayApiServer
) -> None:
    order_id, payment_id = await paid_order(api, server)
    server.faults += [("/v1/orders/", 502, None, False), ("/v1/orders/", 500, None, False)]
    found = await api.look_up("order-1", order_id, 0.0)
    assert isinstance(found, Confirmation) and found.transaction_id == payment_id
    gets = [status for method, _, status in server.requests if method == "GET"]
    assert gets == [502, 500, 200]
    assert api.calls.breaker.failures == 0


async def test_a_refund_whose_answer_was_lost_is_retried_under_its_key_and_made_once(
    api: RazorpayApi, server: RazorpayApiServer
) -> None:
    _, payment_id = await paid_order(api, server)
    server.faults.append(("/v1/payments/", 500, None, True))  # refunded, the answer lost
    refund = await api.refund(payment_id, 49900, "INR", "refund-key-1")
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 49900, "INR")
    assert server.refund_keys == ["refund-key-1", "refund-key-1"]
    assert len(server.refunds) == 1
    assert server.payments[payment_id]["amount_refunded"] == 49900


async def test_a_create_is_not_retried(api: RazorpayApi, server: RazorpayApiServer) -> None:
    """A Razorpay order has no idempotency key: a retry could make a second one."""
    server.faults.append(("/v1/orders", 503, None, False))
    with pytest.raises(GatewayUnavailable):
        await api.create_intent("order-2", 49900, "INR")
    assert [status for _, _, status in server.requests] == [503]
    assert server.orders == {}


async def test_rate_limits_are_waited_out_and_never_open_the_breaker(
    api: RazorpayApi, server: RazorpayApiServer
) -> None:
    server.faults += [("/v1/orders", 429, "0.1", False)] * 2
    made = await api.create_intent("order-3", 49900, "INR")
    assert made.intent_id in server.orders
    for _ in range(8):
        server.faults += [("/v1/orders", 429, "0", False)] * 3
        with pytest.raises(GatewayUnavailable, match="rate limited"):
            await api.create_intent("order-4", 49900, "INR")
    assert api.calls.breaker.state == CLOSED


async def test_server_errors_open_the_breaker(api: RazorpayApi, server: RazorpayApiServer) -> None:
    for _ in range(5):
        server.faults.append(("/v1/orders", 500, None, False))
        with pytest.raises(GatewayUnavailable):
            await api.create_intent("order-5", 49900, "INR")
    assert api.calls.breaker.state == OPEN
    asked = len(server.requests)
    with pytest.raises(GatewayUnavailable, match="not calling it"):
        await api.create_intent("order-5", 49900, "INR")
    assert len(server.requests) == asked


async def test_three_decimal_amounts_go_in_thousandths_with_a_last_zero(
    api: RazorpayApi, server: RazorpayApiServer
) -> None:
    made = await api.create_intent("order-6", 295990, "KWD")
    assert server.orders[made.intent_id]["amount"] == 295990
    with pytest.raises(ValueError, match="steps of 10"):
        await api.create_intent("order-7", 295991, "KWD")
