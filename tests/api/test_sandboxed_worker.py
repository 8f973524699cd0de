"""PAYSAGA_WORKFLOW_SANDBOX=true: the worker runs workflows in Temporal's sandbox again, with
the workflow modules' bytecode written first (the sandbox executes them for every run)."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest

from domain.payments import confirmation_workflow_id
from paysaga.temporal import precompile_workflows
from tests.support.outcomes import ONE_CONFIRMATION, effects
from tests.support.signing import razorpay_payment_event, razorpay_request
from tests.support.stack import Stack


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"PAYSAGA_WORKFLOW_SANDBOX": "true"}


def test_the_workflow_modules_bytecode_is_written_whatever_the_environment_says() -> None:
    spec = importlib.util.find_spec("workflows.payment_confirmation")
    assert spec is not None and spec.origin is not None
    cached = Path(importlib.util.cache_from_source(spec.origin))
    cached.unlink(missing_ok=True)
    precompile_workflows()  # this machine sets PYTHONDONTWRITEBYTECODE=1
    assert cached.exists()


async def test_a_sandboxed_worker_confirms_a_payment(stack: Stack) -> None:
    order = await stack.place_order("razorpay")
    tx = f"pay_{uuid.uuid4().hex[:12]}"
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, order["amount"])
    response = await stack.post("/webhooks/razorpay", razorpay_request(event))
    assert response.json() == {"result": "accepted"}

    outcome = await stack.result(confirmation_workflow_id("razorpay", tx))
    assert outcome.outcome == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION
