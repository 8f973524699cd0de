"""The vendor's acceptance window on the real stack (issue 28), with a window of one second:
unanswered, the order is rejected (`timeout`, by `system:vendor_window`) and refunded in
full; the window's close races a vendor's answer and exactly one wins; a rejection whose
refund was never started (a crash, Temporal down) has it started by the next call; and
`paysaga admin check` reports an order left pending past its window.

The window keeper that calls `AcceptanceWindow.close_due` every poll and `drain` at its
round's end is the lead's (issue 24); here the test makes those calls."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.fulfilment import AcceptanceWindow
from db import vendor_invariants
from db.fulfilment import reject
from db.invariants import check_invariants
from domain.payments import refund_workflow_id
from tests.support.gateway_events import refund_notice
from tests.support.outcomes import refund_result, stock_of
from tests.support.stack import Stack
from tests.support.vendors import confirmation, order_state, paid_vendor_order, vendor


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"PAYSAGA_VENDOR_ACCEPT_SECONDS": "1"}


def window(stack: Stack, client: Client | None = None) -> AcceptanceWindow:
    return AcceptanceWindow(stack.sessions, client or stack.client, stack.task_queue)


async def poll(keeper: AcceptanceWindow) -> int:
    """One poll of the keeper's round, its closes waited for: how many it rejected."""
    before = keeper.closed
    await keeper.close_due()
    await keeper.drain()
    return keeper.closed - before


async def past_its_window(stack: Stack, order: dict[str, Any]) -> None:
    for _ in range(100):
        if (await stack.order(order["id"]))["accept_by"] is not None:
            break
    await asyncio.sleep(1.2)


async def refund_running(stack: Stack, provider: str, tx: str) -> bool:
    handle = stack.client.get_workflow_handle(refund_workflow_id(provider, tx))
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def test_unanswered_the_order_is_rejected_and_refunded_in_full(stack: Stack) -> None:
    order, tx = await paid_vendor_order(stack, "razorpay")
    await past_its_window(stack, order)
    keeper = window(stack)
    assert await poll(keeper) == 1
    assert await poll(keeper) == 0  # closed once
    after = await stack.order(order["id"])
    assert (after["fulfilment"], after["reject_reason"]) == ("rejected", "timeout")
    assert after["refund"]["status"] == "pending"
    assert after["refund"]["requested_by"] == "system:vendor_window"
    assert await refund_running(stack, "razorpay", tx)
    outcome = await asyncio.wait_for(confirmation(stack, "razorpay", tx).result(), 60)
    assert outcome.outcome == "paid" and outcome.ticket_code is None
    await order_state(stack, "razorpay", tx, "rejected")
    # The gateway's refund (offline: the operator's, in its dashboard) completes it.
    notice = refund_notice("razorpay", order, tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "succeeded"
    assert (await stack.order(order["id"]))["status"] == "refunded"
    assert await stock_of(stack, order) == 5
    late = await stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
    assert late.status_code == 409 and "rejected already" in late.json()["detail"]


async def test_the_window_and_a_vendor_racing_end_in_exactly_one(stack: Stack) -> None:
    paid = [await paid_vendor_order(stack, "standard") for _ in range(3)]
    await past_its_window(stack, paid[-1][0])
    keeper = window(stack)
    assert await keeper.close_due() == 3  # started: the closes run beside the accepts
    accepts = await asyncio.gather(
        *(
            stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
            for order, _ in paid
        )
    )
    await keeper.drain()
    assert keeper.closed + [a.status_code for a in accepts].count(200) == 3
    for (order, _), answer in zip(paid, accepts, strict=True):
        assert answer.status_code in (200, 409)
        final = (await stack.order(order["id"]))["fulfilment"]
        assert final == ("accepted" if answer.status_code == 200 else "rejected")


class TemporalDownOnce:
    """The stack's client, whose first workflow start fails as an unreachable server's."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.refused = 0

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        if not self.refused:
            self.refused += 1
            raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
        return await self.client.start_workflow(*args, **kwargs)

    def get_workflow_handle(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.get_workflow_handle(*args, **kwargs)


async def test_a_refund_never_started_is_started_by_the_next_call(stack: Stack) -> None:
    # Temporal down when the window closed: rejected and refund asked, not started.
    order, tx = await paid_vendor_order(stack, "razorpay")
    await past_its_window(stack, order)
    flaky = TemporalDownOnce(stack.client)
    keeper = window(stack, cast(Client, flaky))
    assert await poll(keeper) == 1
    assert flaky.refused == 1 and not await refund_running(stack, "razorpay", tx)
    assert await poll(keeper) == 0  # nothing due, but the refund is started
    assert await refund_running(stack, "razorpay", tx)

    # The process died between the rejection's commit and its refund's start: a new window
    # (the next keeper round, another worker) starts it.
    order, tx = await paid_vendor_order(stack, "razorpay")
    async with stack.sessions.begin() as s:
        await reject(s, uuid.UUID(order["id"]), "vendor:acme", "no tables left")
    assert not await refund_running(stack, "razorpay", tx)
    assert await poll(window(stack)) == 0
    assert await refund_running(stack, "razorpay", tx)
    # Its confirmation was never told: it reads the row once the window (and grace) passed.
    assert (await stack.order(order["id"]))["refund"]["requested_by"] == "vendor:acme"


async def test_the_check_reports_an_order_left_pending_past_its_window(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vendor_invariants, "GRACE", timedelta(0))
    order, _ = await paid_vendor_order(stack, "standard")
    await past_its_window(stack, order)
    found = await check_invariants(stack.sessions, stack.client, stack.task_queue)
    assert [(v.rule, order["id"] in v.detail) for v in found] == [("vendor_acceptance", True)]
    assert "past its window" in found[0].detail
    assert await poll(window(stack)) == 1
    assert await check_invariants(stack.sessions, stack.client, stack.task_queue) == []
