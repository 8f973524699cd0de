"""Refunds on the real stack, offline mode: asked for by the owner or an admin, completed by
each gateway's own refund notice (signed as it signs), once; a failed refund opens a case; a
refund made in the gateway's dashboard is recorded too; policy refusals are 409s."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from activities.reconciliation import ReconcileInput
from db.models import Event, Product, ReconciliationCase, Refund
from db.refunds import request_refund
from domain.payments import confirmation_workflow_id, refund_workflow_id
from tests.support.gateway_events import refund_notice, signed_confirmation, transaction_of
from tests.support.outcomes import count, refund_result, stock_of
from tests.support.stack import Stack
from workflows.reconciliation import ReconcileWorkflow


async def paid_order(stack: Stack, provider: str, stock: int = 5) -> tuple[dict[str, Any], str]:
    order = await stack.place_order(provider, stock=stock)
    tx = transaction_of(provider, order, f"tx_{uuid.uuid4().hex[:12]}")
    answer = await stack.post(f"/webhooks/{provider}", signed_confirmation(provider, order, tx))
    assert answer.json() == {"result": "accepted"}
    assert (await stack.result(confirmation_workflow_id(provider, tx))).outcome == "paid"
    return order, tx


async def test_owner_asks_and_the_gateway_confirms_once(stack: Stack) -> None:
    order, tx = await paid_order(stack, "razorpay", stock=5)
    assert await stock_of(stack, order) == 4
    asked = await stack.http.post(
        f"/orders/{order['id']}/refund", json={"reason": "cannot attend"}, headers=stack.user()
    )
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "paid"
    assert asked.json()["refund"]["status"] == "pending"
    again = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert again.status_code == 202 and again.json()["refund"]["status"] == "pending"
    assert await count(stack.sessions, Refund) == 1

    notice = refund_notice("razorpay", order, tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "succeeded"
    after = await stack.order(order["id"])
    assert after["status"] == "refunded"
    assert after["payment"]["status"] == "refunded"
    assert after["refund"]["status"] == "succeeded" and after["refund"]["reason"] == "cannot attend"
    assert await stock_of(stack, order) == 5
    # The gateway tells it again: nothing changes, nothing is released twice.
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "already"
    assert await stock_of(stack, order) == 5
    assert await count(stack.sessions, Event, Event.type == "PaymentRefunded") == 1
    late = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert late.status_code == 202 and late.json()["refund"]["status"] == "succeeded"


async def test_refund_made_in_the_gateway_dashboard_is_recorded(stack: Stack) -> None:
    order, tx = await paid_order(stack, "stripe")
    assert (await stack.post("/webhooks/stripe", refund_notice("stripe", order, tx))).json() == {
        "result": "accepted"
    }
    assert await refund_result(stack, "stripe", tx) == "succeeded"
    after = await stack.order(order["id"])
    assert after["status"] == "refunded"
    assert after["refund"]["requested_by"] == "gateway:stripe"


async def test_failed_refund_opens_a_case_and_a_later_success_closes_it(stack: Stack) -> None:
    order, tx = await paid_order(stack, "standard")
    asked = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)
    assert asked.status_code == 202
    failed = refund_notice("standard", order, tx, status="failed")
    assert (await stack.post("/webhooks/standard", failed)).json() == {"result": "accepted"}
    assert await refund_result(stack, "standard", tx) == "failed"
    after = await stack.order(order["id"])
    assert after["status"] == "paid" and after["refund"]["status"] == "failed"
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [(c["kind"], c["transaction_id"]) for c in cases] == [("refund_failed", tx)]
    assert await count(stack.sessions, Event, Event.type == "RefundFailed") == 1

    # Asked again (a new refund workflow run), and this time the gateway refunds.
    assert (await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)).json()[
        "refund"
    ]["status"] == "pending"
    done = refund_notice("standard", order, tx)
    assert (await stack.post("/webhooks/standard", done)).json() == {"result": "accepted"}
    for _ in range(100):
        if (await stack.order(order["id"]))["status"] == "refunded":
            break
        await asyncio.sleep(0.1)
    assert (await stack.order(order["id"]))["status"] == "refunded"
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
    assert case is not None and case.state == "resolved"


async def test_partial_refund_is_not_applied_but_opens_a_case(stack: Stack) -> None:
    order, tx = await paid_order(stack, "stripe")
    partial = refund_notice("stripe", order, tx, amount=order["amount"] // 2)
    assert (await stack.post("/webhooks/stripe", partial)).json() == {"result": "accepted"}
    assert await refund_result(stack, "stripe", tx) == "partial"
    assert (await stack.order(order["id"]))["status"] == "paid"
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [c["kind"] for c in cases] == ["refund_failed"]
    assert "refunds in full" in cases[0]["reason"]


@pytest.mark.parametrize("stack_env", [{"PAYSAGA_REFUND_WINDOW_SECONDS": "0"}])
async def test_policy_refusals_are_409_and_change_nothing(stack: Stack) -> None:
    unpaid = await stack.place_order("razorpay")
    refused = await stack.http.post(f"/orders/{unpaid['id']}/refund", headers=stack.user())
    assert refused.status_code == 409 and "awaiting_payment" in refused.json()["detail"]
    order, _ = await paid_order(stack, "razorpay")
    late = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user())
    assert late.status_code == 409 and "until" in late.json()["detail"]
    foreign = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.user("eve"))
    assert foreign.status_code == 404
    assert await count(stack.sessions, Refund) == 0
    admin = await stack.http.post(f"/orders/{order['id']}/refund", headers=stack.admin)
    assert admin.status_code == 202 and admin.json()["refund"]["status"] == "pending"


async def test_a_late_payment_is_refunded_by_itself_and_its_case_settled(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    cancelled = await stack.http.post(f"/orders/{order['id']}/cancel", headers=stack.user())
    assert cancelled.status_code == 200
    tx = f"pay_{uuid.uuid4().hex[:14]}"
    late = await stack.post("/webhooks/razorpay", signed_confirmation("razorpay", order, tx))
    assert late.json() == {"result": "accepted"}
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "needs_reconciliation", lambda s: s.parked)
    # Its refund started by itself (offline mode: it waits for the operator's refund at the
    # gateway, whose notice completes it).
    refund = stack.client.get_workflow_handle(refund_workflow_id("razorpay", tx))
    assert (await refund.describe()).status == WorkflowExecutionStatus.RUNNING
    shown = (await stack.order(order["id"]))["refund"]  # the order shows it while it runs
    assert (shown["status"], shown["requested_by"]) == ("pending", "system:late_payment")
    notice = refund_notice("razorpay", order, tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "succeeded"
    assert (await stack.result(workflow_id)).outcome == "refunded"
    final = await stack.order(order["id"])
    assert (final["status"], final["payment"]["status"]) == ("cancelled", "refunded")
    assert final["refund"]["requested_by"] == "system:late_payment"
    async with stack.sessions() as s:
        case = await s.scalar(
            select(ReconciliationCase).where(ReconciliationCase.transaction_id == tx)
        )
    assert case is not None and (case.kind, case.state) == ("late_payment", "resolved")


async def test_stock_an_admin_withdraws_cancels_unpaid_and_refunds_paid_orders(
    stack: Stack,
) -> None:
    """ "No stock after pay: refund". Four seats, two paid, one awaiting payment, one free; the
    admin withdraws three: the free seat, then the unpaid order (cancelled), then the newest
    paid one (refunded). The owed seat is written off when that refund completes, never put
    back on sale; the older paid order keeps its seat."""
    sku = f"ROOM-{uuid.uuid4().hex[:6]}"
    product = {"sku": sku, "name": "Workshop", "unit_amount": 9900, "currency": "INR", "stock": 4}
    assert (await stack.http.post("/admin/products", json=product, headers=stack.admin)).is_success

    async def order() -> dict[str, Any]:
        body = {"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"}
        placed = await stack.http.post("/orders", json=body, headers=stack.user())
        assert placed.status_code == 201, placed.text
        created: dict[str, Any] = placed.json()
        return created

    async def pay(placed: dict[str, Any]) -> str:
        tx = f"pay_{uuid.uuid4().hex[:12]}"
        await stack.post("/webhooks/razorpay", signed_confirmation("razorpay", placed, tx))
        assert (await stack.result(confirmation_workflow_id("razorpay", tx))).outcome == "paid"
        return tx

    older, newer, unpaid = await order(), await order(), await order()
    await pay(older)
    newer_tx = await pay(newer)

    async def seats() -> tuple[int, int, int]:
        async with stack.sessions() as s:
            row = (
                await s.execute(
                    select(Product.stock, Product.total_stock, Product.to_withdraw).where(
                        Product.sku == sku
                    )
                )
            ).one()
        return row.stock, row.total_stock, row.to_withdraw

    too_many = await stack.http.post(
        f"/admin/products/{sku}/withdraw", json={"quantity": 5, "reason": "x"}, headers=stack.admin
    )
    assert too_many.status_code == 409 and "4 unit(s)" in too_many.json()["detail"]
    unknown = await stack.http.post(
        "/admin/products/NOPE/withdraw", json={"quantity": 1, "reason": "x"}, headers=stack.admin
    )
    assert unknown.status_code == 404
    as_user = await stack.http.post(
        f"/admin/products/{sku}/withdraw", json={"quantity": 1, "reason": "x"}, headers=stack.user()
    )
    assert as_user.status_code == 403
    assert await seats() == (1, 4, 0)  # nothing changed by the refusals

    taken = await stack.http.post(
        f"/admin/products/{sku}/withdraw",
        json={"quantity": 3, "reason": "the room is smaller"},
        headers=stack.admin,
    )
    assert taken.status_code == 200, taken.text
    assert taken.json() == {
        "sku": sku,
        "quantity": 3,
        "from_stock": 1,
        "cancelled": [unpaid["id"]],
        "refunded": [newer["id"]],
        "owed": 1,
    }
    assert await seats() == (0, 2, 1)  # the unpaid order's seat was written off at once
    assert (await stack.order(unpaid["id"]))["status"] == "cancelled"
    pending = await stack.order(newer["id"])
    assert (pending["status"], pending["refund"]["status"]) == ("paid", "pending")
    assert pending["refund"]["requested_by"] == "system:unfulfillable"
    assert "the room is smaller" in pending["refund"]["reason"]

    notice = refund_notice("razorpay", newer, newer_tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", newer_tx) == "succeeded"
    assert (await stack.order(newer["id"]))["status"] == "refunded"
    assert (await stack.order(older["id"]))["status"] == "paid"
    assert await seats() == (0, 1, 0)  # written off, not back on sale
    sold_out = await stack.http.post(
        "/orders",
        json={"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"},
        headers=stack.user(),
    )
    assert sold_out.status_code == 409 and sold_out.json()["unavailable"] == [sku]


async def test_sweep_starts_a_refund_whose_workflow_never_started(stack: Stack) -> None:
    """Temporal down when a refund was asked for (a stock withdrawal, an owner who gave up
    after a 503): the refund stands `pending` with no workflow to ask the gateway or take
    its answer. The next reconciliation run starts it; a run while it runs starts nothing."""
    order, tx = await paid_order(stack, "standard")
    async with stack.sessions.begin() as s:
        asked = await request_refund(
            s,
            uuid.UUID(order["id"]),
            actor="admin:ops",
            is_admin=True,
            reason="withdrawn",
            window_seconds=3600,
        )
    assert asked.status == "pending"
    handle = stack.client.get_workflow_handle(refund_workflow_id("standard", tx))

    async def sweep() -> list[str]:
        report = await stack.client.execute_workflow(
            ReconcileWorkflow.run,
            ReconcileInput(stack.task_queue, unstarted_after_seconds=0),
            id=f"reconcile-{uuid.uuid4()}",
            task_queue=stack.task_queue,
        )
        return report.refunds_started

    assert await sweep() == [f"standard:{tx}"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await sweep() == []  # running: the same refund, not a second
    notice = refund_notice("standard", order, tx)
    assert (await stack.post("/webhooks/standard", notice)).json() == {"result": "accepted"}
    assert await asyncio.wait_for(handle.result(), timeout=60) == "succeeded"
    final = await stack.order(order["id"])
    assert (final["status"], final["refund"]["status"]) == ("refunded", "succeeded")
    assert final["refund"]["requested_by"] == "admin:ops"
    assert await sweep() == []
