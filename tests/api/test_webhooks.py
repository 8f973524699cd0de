"""UC-35 end to end on real Temporal and PostgreSQL: signed webhook -> saga -> order paid."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError

from api.app import create_app
from db.models import AuditEntry, Order, Payment, ReconciliationCase, SecurityEvent
from domain.confirmation import ConfirmationRun
from domain.payments import Confirmation, confirmation_workflow_id
from tests.support.gateway_events import signed_confirmation, transaction_of
from tests.support.outcomes import NO_CONFIRMATION, ONE_CONFIRMATION, count, effects
from tests.support.signing import (
    STRIPE_OLD_API_VERSION,
    razorpay_payment_event,
    razorpay_request,
    stripe_refunded_event,
    stripe_request,
    stripe_succeeded_event,
)
from tests.support.stack import Stack, settings_for
from workflows.payment_confirmation import ConfirmPaymentWorkflow


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "standard"])
async def test_signed_confirmation_marks_order_paid_once(stack: Stack, provider: str) -> None:
    order = await stack.place_order(provider, amount=25000, currency="EUR")
    tx = transaction_of(provider, order, f"tx_{uuid.uuid4().hex[:12]}")

    response = await stack.post(f"/webhooks/{provider}", signed_confirmation(provider, order, tx))

    assert response.status_code == 200 and response.json() == {"result": "accepted"}
    workflow_id = confirmation_workflow_id(provider, tx)
    outcome = await stack.result(workflow_id)
    paid = await stack.order(order["id"])
    assert paid["status"] == "paid"
    assert paid["payment"]["status"] == "paid"
    assert paid["payment"]["transaction_id"] == tx
    assert outcome.ticket_code is not None and len(outcome.ticket_code) >= 20
    assert paid["ticket"]["code"] == outcome.ticket_code
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
    audit = (
        await stack.http.get(f"/admin/audit?order_id={order['id']}", headers=stack.admin)
    ).json()
    assert [a["action"] for a in audit] == ["payment.confirmed", "order.status_changed"]
    description = await stack.client.get_workflow_handle(workflow_id).describe()
    attributes = {
        k.name: v for k, v in ((p.key, p.value) for p in description.typed_search_attributes)
    }
    assert attributes["PaymentState"] == "completed"
    assert attributes["OrderId"] == order["id"]
    assert attributes["TransactionId"] == tx


async def test_bad_signature_is_rejected_at_the_edge(stack: Stack) -> None:
    """2a: 401, a security event, no workflow, nothing changed."""
    order = await stack.place_order("razorpay")
    event = razorpay_payment_event(order["payment"]["intent_id"], "pay_Forged01", order["amount"])
    body, headers = razorpay_request(event, secret="not-the-gateways-secret")

    response = await stack.http.post("/webhooks/razorpay", content=body, headers=headers)

    assert response.status_code == 401
    # The answer does not say why (nor anything of the setup); the security event does.
    assert response.json() == {"detail": "signature missing, invalid or outside the time tolerance"}
    async with stack.sessions() as s:
        events = list(await s.scalars(select(SecurityEvent)))
    assert [(e.kind, e.provider, e.count) for e in events] == [("invalid_signature", "razorpay", 1)]
    assert "does not match" in events[0].detail["reason"]
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(
            confirmation_workflow_id("razorpay", "pay_Forged01")
        ).describe()
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert await effects(stack.sessions, order["id"]) == NO_CONFIRMATION


async def test_signature_over_reserialised_json_is_rejected(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    body, headers = razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], "pay_Reser01", order["amount"])
    )
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert reserialised != body

    response = await stack.http.post("/webhooks/razorpay", content=reserialised, headers=headers)

    assert response.status_code == 401
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"


async def test_amount_mismatch_changes_nothing_and_opens_a_case(stack: Stack) -> None:
    """2a: real money moved with the wrong amount: no status change, security event, case."""
    order = await stack.place_order("standard", amount=10000, currency="USD")
    tx = "txn_short_paid"

    response = await stack.post(
        "/webhooks/standard", signed_confirmation("standard", order, tx, amount=9000)
    )

    assert response.json() == {"result": "accepted"}
    await stack.wait_state(confirmation_workflow_id("standard", tx), "amount_mismatch")
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
        payment = await s.scalar(select(Payment))
    assert case is not None and (case.kind, case.state, case.amount) == (
        "amount_mismatch",
        "open",
        9000,
    )
    assert str(case.order_id) == order["id"]
    assert payment is not None and payment.status == "pending"
    assert (
        await count(
            stack.sessions,
            SecurityEvent,
            SecurityEvent.kind == "amount_mismatch",
            SecurityEvent.transaction_id == tx,
        )
        == 1
    )
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
    assert await effects(stack.sessions, order["id"]) == NO_CONFIRMATION
    cases = (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json()
    assert [(c["kind"], c["transaction_id"], c["amount"]) for c in cases] == [
        ("amount_mismatch", tx, 9000)
    ]


async def test_unmatched_payment_is_kept_then_attached_by_an_admin(stack: Stack) -> None:
    """2b: no order for the intent: an `unmatched` case, nothing touched, until `attach`."""
    order = await stack.place_order("razorpay", amount=30000)
    tx = "pay_Orphan0001"
    event = razorpay_payment_event("order_UnknownIntent", tx, 30000)

    assert (await stack.post("/webhooks/razorpay", razorpay_request(event))).json() == {
        "result": "accepted"
    }
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "unmatched")
    assert (
        await count(
            stack.sessions,
            ReconciliationCase,
            ReconciliationCase.kind == "unmatched",
            ReconciliationCase.state == "open",
        )
        == 1
    )
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"

    action = f"/admin/payments/razorpay/{tx}/attach"
    body = {"order_id": order["id"], "request_id": "req-1"}
    for _ in range(2):  # a repeated request acts once
        response = await stack.http.post(action, json=body, headers=stack.admin)
        assert response.status_code == 202, response.text

    outcome = await stack.result(workflow_id)
    assert outcome.outcome == "paid" and outcome.order_id == order["id"]
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION | {"audit": 3}
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
        attach = await s.scalar(select(AuditEntry).where(AuditEntry.action == "admin.attach"))
    assert case is not None and case.state == "resolved"
    assert case.resolution == f"attached to order {order['id']}"
    assert attach is not None and attach.actor == "admin:ops"


async def test_admin_resolves_an_unmatched_payment(stack: Stack) -> None:
    tx = "pay_Orphan0002"
    event = razorpay_payment_event("order_NobodyKnows", tx, 500)
    await stack.post("/webhooks/razorpay", razorpay_request(event))
    workflow_id = confirmation_workflow_id("razorpay", tx)
    await stack.wait_state(workflow_id, "unmatched")

    response = await stack.http.post(
        f"/admin/payments/razorpay/{tx}/resolve",
        json={"note": "refunded in the Razorpay dashboard"},
        headers=stack.admin,
    )

    assert response.status_code == 202
    assert (await stack.result(workflow_id)).outcome == "resolved"
    assert (await stack.http.get("/admin/reconciliation", headers=stack.admin)).json() == []
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
    assert case is not None and case.state == "resolved"
    assert case.resolution == "resolved by admin:ops: refunded in the Razorpay dashboard"


async def test_fifty_concurrent_identical_webhooks_have_one_effect(stack: Stack) -> None:
    """3a: concurrent gateway retries: one accepted, the rest duplicate, one of everything."""
    order = await stack.place_order("razorpay")
    tx = "pay_Concurrent01"
    request = razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], tx, order["amount"])
    )

    responses = await asyncio.gather(
        *(stack.post("/webhooks/razorpay", request) for _ in range(50))
    )

    assert all(r.status_code == 200 for r in responses)
    results = sorted(r.json()["result"] for r in responses)
    assert results.count("accepted") == 1 and results.count("duplicate") == 49
    await stack.result(confirmation_workflow_id("razorpay", tx))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
    late = await stack.post("/webhooks/razorpay", request)
    assert late.json() == {"result": "duplicate"}
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_payment_captured_and_order_paid_are_one_payment(stack: Stack) -> None:
    """3a: Razorpay reports one payment twice (payment.captured, order.paid): one effect."""
    order = await stack.place_order("razorpay")
    intent, tx = order["payment"]["intent_id"], "pay_TwoEvents01"
    captured = razorpay_request(razorpay_payment_event(intent, tx, order["amount"]))
    order_paid = razorpay_request(
        razorpay_payment_event(intent, tx, order["amount"], event="order.paid")
    )

    first, second = await asyncio.gather(
        stack.post("/webhooks/razorpay", captured), stack.post("/webhooks/razorpay", order_paid)
    )

    assert sorted([first.json()["result"], second.json()["result"]]) == ["accepted", "duplicate"]
    await stack.result(confirmation_workflow_id("razorpay", tx))
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_database_key_decides_after_workflow_retention(stack: Stack) -> None:
    """3a once Temporal has forgotten the workflow: the (provider, transaction_id) key."""
    order = await stack.place_order("razorpay")
    tx = "pay_Retention01"
    request = razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], tx, order["amount"])
    )
    await stack.post("/webhooks/razorpay", request)
    workflow_id = confirmation_workflow_id("razorpay", tx)
    first = await stack.result(workflow_id)
    # What retention expiry does: the closed workflow is gone from Temporal.
    await stack.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=stack.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        )
    )
    for _ in range(100):
        try:
            await stack.client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            break
        await asyncio.sleep(0.1)

    assert (await stack.post("/webhooks/razorpay", request)).json() == {"result": "duplicate"}
    # And if a confirmation workflow runs again anyway, it finds the row and adds nothing.
    again = await stack.client.execute_workflow(
        ConfirmPaymentWorkflow.run,
        ConfirmationRun(
            Confirmation(
                "razorpay",
                tx,
                order["payment"]["intent_id"],
                order["amount"],
                order["currency"],
                "evt_replayed",
                "payment.captured",
            ),
            lean=True,
        ),
        id=f"{workflow_id}-rerun",
        task_queue=stack.task_queue,
    )
    assert again.outcome == "paid" and again.ticket_code == first.ticket_code
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION


async def test_second_payment_for_a_paid_order_is_kept_as_a_case(stack: Stack) -> None:
    """Money that arrives twice for one order is never a second confirmation."""
    order = await stack.place_order("standard", amount=700, currency="USD")
    await stack.post("/webhooks/standard", signed_confirmation("standard", order, "txn_first"))
    await stack.result(confirmation_workflow_id("standard", "txn_first"))

    await stack.post("/webhooks/standard", signed_confirmation("standard", order, "txn_second"))

    state = await stack.wait_state(
        confirmation_workflow_id("standard", "txn_second"), "needs_reconciliation"
    )
    assert state.cases == ["already_paid"]
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
    async with stack.sessions() as s:
        order_row = await s.get(Order, uuid.UUID(order["id"]))
    assert order_row is not None and order_row.status == "paid"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415),
        ({"Content-Type": "application/json"}, b"x" * (256 * 1024 + 1), 413),
        ({"Content-Type": "application/json"}, b"{}", 401),
    ],
)
async def test_edge_answers(
    stack: Stack, headers: dict[str, str], body: bytes, status: int
) -> None:
    response = await stack.http.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"]


async def test_malformed_body_behind_valid_signature_is_400(stack: Stack) -> None:
    event = {
        "event": "payment.captured",
        "payload": {
            "payment": {
                "entity": {
                    "id": "pay_Bad",
                    "order_id": "order_X",
                    "amount": 12.5,
                    "currency": "INR",
                }
            }
        },
    }
    response = await stack.post("/webhooks/razorpay", razorpay_request(event))
    assert response.status_code == 400
    assert "minor units" in response.json()["detail"]


async def test_valid_event_we_do_not_act_on_is_ignored(stack: Stack) -> None:
    event = razorpay_payment_event("order_X", "pay_Failed01", 100)
    event["event"] = "payment.authorized"
    response = await stack.post("/webhooks/razorpay", razorpay_request(event))
    assert response.json() == {"result": "ignored"}
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(
            confirmation_workflow_id("razorpay", "pay_Failed01")
        ).describe()


async def test_unreachable_temporal_answers_503_so_the_gateway_retries(
    stack: Stack, database_url: str
) -> None:
    app = create_app(
        settings_for(database_url, stack.task_queue, PAYSAGA_TEMPORAL_ADDRESS="127.0.0.1:1")
    )
    order = await stack.place_order("razorpay")
    request = razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], "pay_NoTemporal", order["amount"])
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paysaga/api/v1"
    ) as http:
        response = await http.post("/webhooks/razorpay", content=request[0], headers=request[1])
        ready = await http.get("/readyz")
    assert response.status_code == 503
    assert ready.status_code == 503 and ready.json()["database"] == "ok"
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"


async def test_full_shapes_through_the_api(stack: Stack) -> None:
    """Issue 26 item 6, end to end (offline mode): a `payment.authorized` whose entity already
    says `captured` (Razorpay's own mock) is `ignored` and pays nothing; a refund of a charge
    made without a PaymentIntent (Stripe's own fixture) is `ignored`, not a 400 Stripe would
    retry for days; an old API version's `payment_intent.succeeded`, its `charges` listed in
    full, pays the order once."""
    order = await stack.place_order("razorpay")
    intent = order["payment"]["intent_id"]
    authorized = razorpay_payment_event(
        intent, "pay_AuthCaptured", order["amount"], event="payment.authorized", status="captured"
    )
    answer = await stack.post("/webhooks/razorpay", razorpay_request(authorized))
    assert answer.json() == {"result": "ignored"}
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"

    no_intent = await stack.post(
        "/webhooks/stripe", stripe_request(stripe_refunded_event(None, 1000))
    )
    assert (no_intent.status_code, no_intent.json()) == (200, {"result": "ignored"})

    paid = await stack.place_order("stripe", currency="EUR")
    pi = paid["payment"]["intent_id"]
    old = stripe_succeeded_event(pi, paid["amount"], "eur", api_version=STRIPE_OLD_API_VERSION)
    assert (await stack.post("/webhooks/stripe", stripe_request(old))).json() == {
        "result": "accepted"
    }
    assert (await stack.result(confirmation_workflow_id("stripe", pi))).outcome == "paid"
    assert await effects(stack.sessions, paid["id"]) == ONE_CONFIRMATION
