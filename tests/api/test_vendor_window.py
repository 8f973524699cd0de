"""The vendor's acceptance window on the real stack (issue 28), with a window of one second:
unanswered, the order is rejected (`timeout`, by `system:vendor_window`) and refunded in
full; the window's close races a vendor's answer and exactly one wins; a rejection whose
refund was never started (a crash, Temporal down) has it started by the next poll; and
`paysaga admin check` reports an order left pending past its window.

The window keeper (issue 24) calls `AcceptanceWindow.close_due` every poll and `drain` at
its round's end; here the test makes those calls too, and asserts outcomes, not who closed
the window: with the keeper running beside the test, either may."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import func, update
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.fulfilment import AcceptanceWindow
from db import vendor_invariants
from db.fulfilment import TIMEOUT, WINDOW, reject
from db.models import Event, Order, Refund
from domain.payments import refund_workflow_id
from tests.support.gateway_events import refund_notice
from tests.support.outcomes import count, refund_result, stock_of
from tests.support.stack import Stack
from tests.support.vendors import (
    confirmation,
    order_state,
    paid_vendor_order,
    until_fulfilment,
    vendor,
)

LONG = "900"  # a window that does not end during the test


@pytest.fixture
def stack_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A window of one second, unless a test asks for another (indirect)."""
    return {"PAYSAGA_VENDOR_ACCEPT_SECONDS": getattr(request, "param", "1")}


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


async def closed(stack: Stack, order: dict[str, Any]) -> dict[str, Any]:
    """Past its window: one poll (the keeper's, if it runs, may come first), then the order
    as it reads once rejected."""
    await past_its_window(stack, order)
    await poll(window(stack))
    return await until_fulfilment(stack, order["id"], "rejected")


async def test_unanswered_the_order_is_rejected_and_refunded_in_full(stack: Stack) -> None:
    order, tx = await paid_vendor_order(stack, "razorpay")
    after = await closed(stack, order)
    assert await poll(window(stack)) == 0  # closed once
    assert (after["fulfilment"], after["reject_reason"]) == ("rejected", "timeout")
    assert after["refund"]["status"] == "pending"
    assert after["refund"]["requested_by"] == "system:vendor_window"
    assert after["refund"]["amount"] == order["amount"]
    assert await count(stack.sessions, Event, Event.type == "VendorRejected") == 1
    assert await count(stack.sessions, Refund, Refund.transaction_id == tx) == 1
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
    await keeper.close_due()  # the closes run beside the accepts
    accepts = await asyncio.gather(
        *(
            stack.http.post(f"/vendor/orders/{order['id']}/accept", headers=vendor())
            for order, _ in paid
        )
    )
    await keeper.drain()
    for (order, tx), answer in zip(paid, accepts, strict=True):
        assert answer.status_code in (200, 409), answer.text
        winner = "accepted" if answer.status_code == 200 else "rejected"
        assert (await until_fulfilment(stack, order["id"], winner))["fulfilment"] == winner
        decided = Event.order_id == order["id"], Event.type.like("Vendor%")
        assert await count(stack.sessions, Event, *decided) == 1
        refunds = await count(stack.sessions, Refund, Refund.transaction_id == tx)
        assert refunds == (winner == "rejected")


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


@pytest.mark.parametrize("stack_env", [LONG], indirect=True)
async def test_a_refund_never_started_is_started_by_the_next_poll(stack: Stack) -> None:
    # Temporal down when the window closed: the rejection committed, its refund not started,
    # and the poll that finds it asks a Temporal still down.
    order, tx = await paid_vendor_order(stack, "razorpay")
    async with stack.sessions.begin() as s:
        await reject(s, uuid.UUID(order["id"]), WINDOW, TIMEOUT)
    flaky = TemporalDownOnce(stack.client)
    keeper = window(stack, cast(Client, flaky))
    assert await poll(keeper) == 0  # nothing due: only the recovery acted
    assert flaky.refused == 1 and not await refund_running(stack, "razorpay", tx)
    assert await poll(keeper) == 0  # tried again after the failure: started
    assert await refund_running(stack, "razorpay", tx)

    # The process died between a vendor's rejection and its refund's start: a new window
    # (the next keeper round, another worker) starts it.
    order, tx = await paid_vendor_order(stack, "razorpay")
    async with stack.sessions.begin() as s:
        await reject(s, uuid.UUID(order["id"]), "vendor:acme", "no tables left")
    assert not await refund_running(stack, "razorpay", tx)
    assert await poll(window(stack)) == 0
    assert await refund_running(stack, "razorpay", tx)
    # Its confirmation was never told: it reads the row once the window (and grace) passed.
    assert (await stack.order(order["id"]))["refund"]["requested_by"] == "vendor:acme"


@pytest.mark.parametrize("stack_env", [LONG], indirect=True)
async def test_the_check_reports_what_breaks_the_acceptance_rule(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each broken state made inside a transaction that is rolled back: the check, run in
    it, sees it, and nothing else (a keeper running beside the test) does."""
    monkeypatch.setattr(vendor_invariants, "GRACE", timedelta(0))
    order, _ = await paid_vendor_order(stack, "standard")
    key = uuid.UUID(order["id"])
    broken: list[tuple[dict[str, Any], str]] = [
        ({"accept_by": func.now() - timedelta(seconds=1)}, "s past its window"),
        ({"fulfilment": "rejected"}, "rejected, paid, and no refund under way or done"),
        ({"fulfilment": None}, "paid, needs acceptance, but has no fulfilment"),
        ({"accept_seconds": None}, "has a fulfilment (pending_vendor_acceptance) but needs no"),
    ]
    for change, problem in broken:
        async with stack.sessions() as s:
            await s.execute(update(Order).where(Order.id == key).values(**change))
            found = await vendor_invariants.vendor_acceptance(s)
            await s.rollback()
        assert [o for o, _ in found] == [order["id"]] * len(found) and found, (change, found)
        assert any(problem in p for _, p in found), (change, found)
    async with stack.sessions() as s:
        assert await vendor_invariants.vendor_acceptance(s) == []
