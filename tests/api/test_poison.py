"""Poison confirmations: signed, but holding data the database can never take.

At the edge they are a 400 and nothing starts. One that gets past the edge anyway (a workflow
started by hand, with the signature check skipped) ends as a visible `unprocessable` case,
never an endless silent retry loop.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.service import RPCError

from db.models import Event, Payment, ReconciliationCase, SecurityEvent
from domain.confirmation import ConfirmationRun
from domain.payments import Confirmation, is_identifier
from tests.support.outcomes import count
from tests.support.signing import razorpay_payment_event, razorpay_signed
from tests.support.stack import Stack
from workflows.payment_confirmation import ConfirmPaymentWorkflow

HUGE = "__5000_DIGITS__"  # Python cannot even hold it as an int by default: spliced in as text
POISON: dict[str, dict[str, Any]] = {
    "NUL byte in the payment id": {"tx": "pay_\u0000evil"},
    "lone surrogate in the payment id": {"tx": "pay_\ud800"},
    "newline in the intent id": {"intent": "order_x\n"},
    "overlong payment id": {"tx": "pay_" + "x" * 300},
    "amount beyond BIGINT": {"amount": 2**63},
    "5,000-digit amount": {"amount": HUGE},
    "negative amount": {"amount": -1},
    "float amount": {"amount": 499.0},
    "currency with a trailing newline": {"currency": "INR\n"},
    "currency upper-casing to 3 letters": {"currency": "ßd"},
    "currency of 4 letters": {"currency": "INRR"},
}


def _body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).replace(json.dumps(HUGE), "9" * 5000).encode()


@pytest.mark.parametrize("case", sorted(POISON))
async def test_a_poison_confirmation_is_refused_at_the_edge(stack: Stack, case: str) -> None:
    order = await stack.place_order("razorpay")
    poison = dict(POISON[case])
    poison.setdefault("tx", f"pay_{uuid.uuid4().hex[:12]}")
    event = razorpay_payment_event(
        poison.get("intent", order["payment"]["intent_id"]),
        poison["tx"],
        poison.get("amount", order["amount"]),
        poison.get("currency", "INR"),
    )
    response = await stack.post("/webhooks/razorpay", razorpay_signed(_body(event)))

    assert response.status_code == 400, response.text
    assert "detail" in response.json()
    # Nothing started: not this payment's workflow, nor any other on this queue.
    if is_identifier(tx := poison.get("tx", "")):
        with pytest.raises(RPCError):
            await stack.client.get_workflow_handle(f"payment-razorpay-{tx}").describe()
    count_query = f'TaskQueue = "{stack.task_queue}" AND WorkflowType = "ConfirmPayment"'
    assert (await stack.client.count_workflows(count_query)).count == 0
    assert (await stack.order(order["id"]))["payment"]["status"] == "pending"
    assert await count(stack.sessions, ReconciliationCase) == 0
    assert await count(stack.sessions, SecurityEvent) == 0  # signed: not an attack on auth


async def test_poison_past_the_edge_parks_as_an_unprocessable_case(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    poison = Confirmation(
        "razorpay",
        "pay_\u0000evil",
        order["payment"]["intent_id"],
        order["amount"],
        order["currency"],
        "evt_forged",
        "payment.captured",
    )
    workflow_id = f"payment-razorpay-forged-{uuid.uuid4().hex[:8]}"
    await stack.client.start_workflow(
        ConfirmPaymentWorkflow.run,
        ConfirmationRun(poison, lean=True),
        id=workflow_id,
        task_queue=stack.task_queue,
    )

    try:
        await check_parked_unprocessable(stack, workflow_id, order)
    finally:
        await stack.client.get_workflow_handle(workflow_id).terminate("test over")


async def check_parked_unprocessable(stack: Stack, workflow_id: str, order: dict[str, Any]) -> None:
    state = await stack.wait_state(workflow_id, "needs_reconciliation")
    assert state.parked and state.cases == ["unprocessable"]
    async with stack.sessions() as s:
        case = await s.scalar(select(ReconciliationCase))
        payments = list(await s.scalars(select(Payment)))
        events = list(await s.scalars(select(Event.type)))
    assert case is not None and case.kind == "unprocessable" and case.state == "open"
    assert case.transaction_id == repr("pay_\u0000evil")  # kept, escaped
    assert case.currency == "XXX"  # ISO 4217: no currency; the real one is in the detail
    assert [p.status for p in payments] == ["pending"]  # nothing applied
    assert events == ["OrderCreated"]
    assert (await stack.order(order["id"]))["status"] == "awaiting_payment"
