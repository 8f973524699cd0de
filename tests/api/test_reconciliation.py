"""Failure paths 4a, 5a, 6a, 8a and the admin repairs, on real Temporal and PostgreSQL.

A table is made to refuse writes with a trigger that raises, as a failing database would.
The first retry phase is one second here and the slow loop ten minutes, so a recovery within
the test's minute proves the `retry` signal cut the slow loop short.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from temporalio.client import WorkflowExecutionStatus

from activities.reconciliation import ReconcileInput
from db import journal
from db.invariants import check_invariants
from db.models import AuditEntry, Event, Payment, ReconciliationCase, Refund, Ticket
from domain import keys
from domain.payments import AdminRequest, confirmation_workflow_id, refund_workflow_id
from tests.support.gateway_events import refund_notice
from tests.support.outcomes import (
    ONE_CONFIRMATION,
    count,
    effects,
    refund_result,
    wait_refund_status,
)
from tests.support.signing import razorpay_payment_event, razorpay_request
from tests.support.stack import BIN, Refuse, Stack, confirm
from workflows.confirmation_audit import AUDIT_FALLBACK
from workflows.reconciliation import ensure_schedule

SLOW = "600"


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {
        "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "1",
        "PAYSAGA_RETRY_FAST_MAX_SECONDS": "0.5",
        "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": SLOW,
        "PAYSAGA_RETRY_SLOW_MAX_SECONDS": SLOW,
    }


def paysaga_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PAYSAGA_DATABASE_URL": stack.settings.require_database_url(),
        "PAYSAGA_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "PAYSAGA_TASK_QUEUE": stack.task_queue,
    }
    return subprocess.run(
        [sys.executable, "-m", "paysaga.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def send_retry(stack: Stack, channel: str, tx: str, workflow_id: str) -> str:
    """Sends `retry` the way an operator would; returns the actor the audit trail must name."""
    if channel == "api":
        response = await stack.http.post(
            f"/admin/payments/razorpay/{tx}/retry", json={}, headers=stack.admin
        )
        assert response.status_code == 202, response.text
        return "admin:ops"
    if channel == "cli":
        done = await asyncio.to_thread(
            paysaga_cli, stack, "admin", "retry", "razorpay", tx, "--as", "dana"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["workflow_id"] == workflow_id
        return "cli:dana"
    if channel == "temporal-cli":  # what the Temporal UI's "Send a Signal" does
        request = {"request_id": "ui-1", "admin": "ui:erin"}
        done = await asyncio.to_thread(
            subprocess.run,
            [
                str(BIN / "temporal"),
                "workflow",
                "signal",
                "--address",
                stack.client.service_client.config.target_host,
                "--workflow-id",
                workflow_id,
                "--name",
                "retry",
                "--input",
                json.dumps(request),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return "ui:erin"
    # The reconciliation schedule, triggered now instead of waiting for its minute.
    schedule_id = f"reconcile-{stack.task_queue}"
    inp = ReconcileInput(stack.task_queue)
    await ensure_schedule(stack.client, inp, 60, schedule_id)
    await ensure_schedule(stack.client, inp, 60, schedule_id)  # idempotent at every start
    handle = stack.client.get_schedule_handle(schedule_id)
    try:
        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(seconds=60)
        await handle.trigger()
        for _ in range(100):
            if (await handle.describe()).info.num_actions >= 1:
                break
            await asyncio.sleep(0.1)
    finally:
        await handle.delete()
    return "system:reconciliation"


@pytest.mark.parametrize("channel", ["api", "cli", "temporal-cli", "schedule"])
async def test_4a_failed_store_parks_then_retry_recovers_it(
    stack: Stack, refuse: Refuse, channel: str
) -> None:
    await refuse("payments", "UPDATE")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    order, workflow_id = await confirm(stack, tx)

    state = await stack.wait_state(workflow_id, "needs_reconciliation")
    assert "store" in state.stuck and "refused" in state.stuck["store"]
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"  # never paid first
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [(c["kind"], c["transaction_id"]) for c in cases] == [("store_failed", tx)]
    # Operators find it in the Temporal UI by PaymentState.
    query = f'PaymentState = "needs_reconciliation" AND TransactionId = "{tx}"'
    for _ in range(100):
        if [w.id async for w in stack.client.list_workflows(query)] == [workflow_id]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("not visible by PaymentState")

    await refuse.lift("payments", "UPDATE")
    actor = await send_retry(stack, channel, tx, workflow_id)

    outcome = await stack.result(workflow_id)  # well before the 600 s slow loop
    assert outcome.outcome == "paid" and "store_failed" in outcome.cases
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION | {"audit": 3}
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
        retry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "admin.retry"))
    assert case is not None and case.state == "resolved"
    assert case.resolution is not None and case.resolution.startswith("recovered automatically")
    assert retry is not None and retry.actor == actor
    assert retry.order_id is not None and str(retry.order_id) == order["id"]


async def test_5a_status_update_waits_and_ends_paid_once(stack: Stack, refuse: Refuse) -> None:
    await refuse("orders", "UPDATE")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    order, workflow_id = await confirm(stack, tx)

    state = await stack.wait_state(workflow_id, "needs_reconciliation")
    assert list(state.stuck) == ["mark_paid"]
    async with stack.sessions() as s:
        payment = await s.scalar(select(Payment))
    assert payment is not None and payment.status == "paid"  # stored; order not yet
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    # In flight, not a violation: its workflow is running and will finish it.
    assert await check_invariants(stack.sessions, stack.client, stack.task_queue) == []
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [c["kind"] for c in cases] == ["status_update_failed"]

    await refuse.lift("orders", "UPDATE")
    request = {"request_id": "r-5a"}
    for _ in range(2):  # a repeated request acts once
        response = await stack.http.post(
            f"/admin/payments/razorpay/{tx}/retry", json=request, headers=stack.admin
        )
        assert response.status_code in (202, 409), response.text

    outcome = await stack.result(workflow_id)
    assert outcome.outcome == "paid" and outcome.cases == ["status_update_failed"]
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION | {"audit": 3}


async def test_6a_unwritable_audit_holds_nothing_back_and_arrives_later(
    stack: Stack, refuse: Refuse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="temporalio.workflow")
    await refuse("audit_log", "INSERT")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    order, workflow_id = await confirm(stack, tx)

    state = await stack.wait_state(
        workflow_id, "paid", until=lambda s: s.ticket_code is not None and "audit" in s.stuck
    )
    keys = {f"payment.confirmed:razorpay:{tx}", f"order.status_changed:{order['id']}:paid"}
    assert set(state.pending_audit_keys) == keys
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await count(stack.sessions, AuditEntry) == 0
    # The fallback: one marked log line per pending entry, and the check accepts them.
    fallback = [r.getMessage() for r in caplog.records if AUDIT_FALLBACK in r.getMessage()]
    decode = json.JSONDecoder().raw_decode
    logged = {
        decode(line.split(AUDIT_FALLBACK, 1)[1].strip())[0]["dedupe_key"] for line in fallback
    }
    assert logged == keys and len(fallback) == 2
    assert await check_invariants(stack.sessions, stack.client, stack.task_queue) == []

    await refuse.lift("audit_log", "INSERT")
    await stack.client.get_workflow_handle(workflow_id).signal(
        "retry", AdminRequest("r-6a", "admin:ops")
    )
    outcome = await stack.result(workflow_id)
    assert outcome.outcome == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION | {"audit": 3}


async def test_8a_ticket_failure_never_rolls_back_the_payment(stack: Stack, refuse: Refuse) -> None:
    await refuse("tickets", "INSERT")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    order, workflow_id = await confirm(stack, tx)

    state = await stack.wait_state(workflow_id, "paid", until=lambda s: "ticket" in s.stuck)
    assert state.cases == []  # a ticket failure is not a payment case
    paid = await stack.order(order["id"])
    assert paid["status"] == "paid" and paid["payment"]["status"] == "paid"
    assert await count(stack.sessions, Ticket) == 0

    await refuse.lift("tickets", "INSERT")
    await stack.client.get_workflow_handle(workflow_id).signal(
        "retry", AdminRequest("r-8a", "admin:ops")
    )
    outcome = await stack.result(workflow_id)
    assert outcome.ticket_code is not None
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION | {"audit": 3}


async def test_admin_refunds_parked_money_through_the_gateway(stack: Stack) -> None:
    """Unmatched money an admin refunds (offline mode): a pending refund and its workflow;
    attach is refused meanwhile; the gateway's refund notice settles it: the confirmation
    ends `refunded`, its case closes, and the order it never belonged to is untouched."""
    order = await stack.place_order("razorpay", amount=30000)
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    event = razorpay_payment_event("order_NoSuchIntent", tx, 1234)
    await stack.post("/webhooks/razorpay", razorpay_request(event))
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "unmatched")

    base = f"/admin/payments/razorpay/{tx}"
    ask = {"reason": "customer paid twice", "request_id": "rf-1"}
    response = await stack.http.post(f"{base}/refund", json=ask, headers=stack.admin)
    assert response.status_code == 202, response.text
    await stack.wait_state(workflow_id, "refund_pending", lambda s: s.refund_asked)
    refund_run = stack.client.get_workflow_handle(refund_workflow_id("razorpay", tx))
    assert (await refund_run.describe()).status == WorkflowExecutionStatus.RUNNING
    attach = await stack.http.post(
        f"{base}/attach", json={"order_id": order["id"]}, headers=stack.admin
    )
    assert attach.status_code == 409 and "refund" in attach.json()["detail"]
    again = await stack.http.post(f"{base}/refund", json=ask, headers=stack.admin)
    assert again.status_code == 202  # the same request id: the first answer, nothing new
    async with stack.sessions() as s:
        pending = await s.scalar(select(Refund).where(Refund.transaction_id == tx))
    assert pending is not None
    assert (pending.status, pending.amount, pending.order_id) == ("pending", 1234, None)

    notice = {"amount": 1234, "currency": "INR"}
    answer = await stack.post("/webhooks/razorpay", refund_notice("razorpay", notice, tx))
    assert answer.json() == {"result": "accepted"}
    outcome = await stack.result(workflow_id)
    assert outcome.outcome == "refunded"
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
        refund = await s.scalar(select(Refund).where(Refund.transaction_id == tx))
        refunded = await s.scalar(select(Event).where(Event.type == "PaymentRefunded"))
        audit = list(await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert case is not None and case.state == "resolved"
    assert case.resolution is not None and "refund asked by admin:ops" in case.resolution
    assert refund is not None and refund.status == "succeeded"
    assert refunded is not None and refunded.order_id is None
    assert refunded.payload["amount"] == 1234
    # (a refusal answered synchronously, as the attach's 409, leaves no entry)
    assert sorted(audit) == ["admin.refund", "refund.requested", "refund.succeeded"]
    open_cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    history = (
        await stack.http.get("/admin/reconciliation?include_resolved=true", headers=stack.admin)
    ).json()
    assert open_cases == [] and [c["state"] for c in history] == ["resolved"]


async def test_parked_money_refunded_in_the_dashboard_settles_itself(stack: Stack) -> None:
    """The operator refunds unmatched money at the gateway without asking paysaga first: the
    gateway's notice is measured against the case (what was paid) and settles the payment."""
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    await stack.post(
        "/webhooks/razorpay",
        razorpay_request(razorpay_payment_event("order_NoSuchIntent", tx, 4321)),
    )
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "unmatched")
    notice = refund_notice("razorpay", {"amount": 4321, "currency": "INR"}, tx)
    assert (await stack.post("/webhooks/razorpay", notice)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "succeeded"
    assert (await stack.result(workflow_id)).outcome == "refunded"
    async with stack.sessions() as s:
        refund = await s.scalar(select(Refund).where(Refund.transaction_id == tx))
    assert refund is not None
    assert (refund.status, refund.amount, refund.requested_by) == (
        "succeeded",
        4321,
        "gateway:razorpay",
    )
    assert (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json() == []


async def test_a_failed_refund_of_parked_money_is_a_case_and_can_be_asked_again(
    stack: Stack,
) -> None:
    order = await stack.place_order("razorpay", amount=30000)
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    # Amount mismatch: money for a real order, of the wrong amount; never stored.
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, 29999)
    await stack.post("/webhooks/razorpay", razorpay_request(event))
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "amount_mismatch")
    base = f"/admin/payments/razorpay/{tx}"
    first = {"reason": "wrong amount", "request_id": "rf-1"}
    assert (await stack.http.post(f"{base}/refund", json=first, headers=stack.admin)).is_success
    await stack.wait_state(workflow_id, "refund_pending", lambda s: s.refund_asked)

    money = {"amount": 29999, "currency": "INR"}
    failed = refund_notice("razorpay", money, tx, status="failed")
    assert (await stack.post("/webhooks/razorpay", failed)).json() == {"result": "accepted"}
    assert await refund_result(stack, "razorpay", tx) == "failed"
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert sorted(c["kind"] for c in cases) == ["amount_mismatch", "refund_failed"]
    assert {c["amount"] for c in cases} == {29999}
    # Still parked: the admin asks again, and this time the gateway refunds.
    second = {"reason": "wrong amount", "request_id": "rf-2"}
    assert (await stack.http.post(f"{base}/refund", json=second, headers=stack.admin)).is_success
    await wait_refund_status(stack, tx, "pending")
    done = refund_notice("razorpay", money, tx)
    assert (await stack.post("/webhooks/razorpay", done)).json() == {"result": "accepted"}
    assert (await stack.result(workflow_id)).outcome == "refunded"
    assert (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json() == []
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"


async def test_admin_actions_refuse_what_cannot_act(stack: Stack) -> None:
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    order, workflow_id = await confirm(stack, tx)
    await stack.result(workflow_id)
    base = f"/admin/payments/razorpay/{tx}"

    finished = await stack.http.post(f"{base}/retry", json={}, headers=stack.admin)
    unknown = await stack.http.post(
        "/admin/payments/razorpay/pay_nobody/resolve", json={"note": "x"}, headers=stack.admin
    )
    bad_order = await stack.http.post(
        f"{base}/attach", json={"order_id": "not-a-uuid"}, headers=stack.admin
    )
    bad_action = await stack.http.post(f"{base}/explode", json={}, headers=stack.admin)
    user = await stack.http.post(f"{base}/retry", json={}, headers=stack.user())

    assert finished.status_code == 409 and "finished" in finished.json()["detail"]
    assert unknown.status_code == 404
    assert bad_order.status_code == 400
    assert bad_action.status_code == 422
    assert user.status_code == 403
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_reconciliation_repairs_a_stored_payment_whose_workflow_is_gone(
    stack: Stack,
) -> None:
    """What a terminated workflow leaves: payment `paid`, order still awaiting payment."""
    order = await stack.place_order("razorpay")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    async with stack.sessions.begin() as s:
        await s.execute(
            update(Payment).values(
                status="paid",
                transaction_id=tx,
                confirmed_at=text("now() - interval '5 minutes'"),
            )
        )
        # The store's own event, written in its transaction before the workflow was lost.
        await journal.emit(
            s,
            "PaymentConfirmed",
            order["id"],
            keys.event("PaymentConfirmed", "razorpay", tx),
            {"provider": "razorpay", "transaction_id": tx},
        )

    before = await asyncio.to_thread(paysaga_cli, stack, "admin", "check")
    assert before.returncode == 1
    assert "stored_not_paid" in before.stdout and "status_change_audited" not in before.stdout

    await send_retry(stack, "schedule", tx, confirmation_workflow_id("razorpay", tx))
    for _ in range(100):
        if (await stack.order(order["id"]))["status"] == "paid":
            break
        await asyncio.sleep(0.1)
    after = await asyncio.to_thread(paysaga_cli, stack, "admin", "check")
    assert after.returncode == 0, after.stdout
    async with stack.sessions() as s:
        audit = await s.scalar(select(AuditEntry))
    assert audit is not None and audit.actor == "system:reconciliation"
    assert audit.action == "order.status_changed"


async def test_check_names_each_broken_invariant(stack: Stack) -> None:
    paid = await stack.place_order("razorpay")
    ticketed = await stack.place_order("razorpay")
    cancelled = await stack.place_order("razorpay")
    assert (
        await stack.http.post(f"/orders/{cancelled['id']}/cancel", headers=stack.user())
    ).status_code == 200
    async with stack.sessions.begin() as s:
        await s.execute(
            text("UPDATE orders SET status = 'paid' WHERE id = :id"), {"id": paid["id"]}
        )
        await s.execute(
            text("INSERT INTO tickets (order_id, code) VALUES (:id, 'forged')"),
            {"id": ticketed["id"]},
        )
        # Stock lost (released twice the database refuses: stock may not pass total_stock); a
        # cancelled order that was also paid; money stored for it with no late_payment case.
        await s.execute(
            text("UPDATE products SET stock = stock - 1 WHERE sku = :sku"),
            {"sku": cancelled["items"][0]["sku"]},
        )
        await journal.emit(s, "OrderPaid", cancelled["id"], "forged:OrderPaid", {})
        await s.execute(
            text(
                "UPDATE payments SET status = 'paid', transaction_id = 'pay_forged' "
                "WHERE order_id = :id"
            ),
            {"id": cancelled["id"]},
        )
        await journal.emit(
            s,
            "PaymentConfirmed",
            cancelled["id"],
            "forged:PaymentConfirmed",
            {"transaction_id": "pay_forged"},
        )

    violations = await check_invariants(stack.sessions, None, stack.task_queue)
    rules = sorted(v.rule for v in violations)

    assert rules == [
        "late_payment_has_case",
        "paid_and_cancelled",
        "paid_order_payment",
        "payment_without_order_has_case",  # Temporal unreachable: cannot be confirmed
        "state_change_has_event",  # the forged paid order: no OrderPaid
        "state_change_has_event",  # ... and no OrderPlaced nor a lifecycle known to place it
        "status_change_audited",
        "stock_exact",
        "ticket_for_unpaid_order",
    ], "\n".join(map(str, violations))
    async with stack.sessions.begin() as s:  # leave the invariants whole for the teardown
        await s.execute(text("DELETE FROM tickets"))
        await s.execute(text("UPDATE orders SET status = 'awaiting_payment' WHERE status = 'paid'"))
        await s.execute(
            text("UPDATE products SET stock = stock + 1 WHERE sku = :sku"),
            {"sku": cancelled["items"][0]["sku"]},
        )
        await s.execute(
            text("UPDATE payments SET status = 'cancelled' WHERE transaction_id = 'pay_forged'")
        )
        await s.execute(text("DELETE FROM events WHERE dedupe_key LIKE 'forged:%'"))
