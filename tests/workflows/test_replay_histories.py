"""Recorded histories of the confirmation workflow replay against today's code.

The order lifecycle's shapes (expired, paid, cancelled) are recorded beside them.

A change to a running workflow must not change the commands it issues for a history that is
already written; if it would, it goes behind `workflow.patched(...)` (see the README). These
files are that promise: each shape the workflow takes (paid, parked then attached, resolved,
refunded through the gateway, a step escalated and recovered, a run that continued as new,
an authorization captured then paid) as a real server wrote it.

Record them again, deliberately and only for a new shape, with
`PAYSAGA_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflows/test_replay_histories.py`, or one
new scenario with `PAYSAGA_RECORD_HISTORY=<name>`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from domain.confirmation import ConfirmationRun
from domain.orders import CloseResult, OrderClosed, OrderRun
from domain.payments import AdminRequest, Confirmation, RecoveryTiming
from tests.workflows.test_payment_confirmation import (
    CONFIRMATION,
    FakeActivities,
    FlakyStore,
    until_parked,
)
from workflows.order_lifecycle import OrderLifecycleWorkflow
from workflows.payment_confirmation import ConfirmPaymentWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("PAYSAGA_RECORD_HISTORIES") == "1"
FAST = RecoveryTiming(first_phase=1.0, fast_max=0.2, slow_initial=0.2, slow_max=0.2)

Handle = WorkflowHandle[ConfirmPaymentWorkflow, Any]
Drive = Callable[[Handle], Awaitable[None]]


async def nothing(_: Handle) -> None:
    pass


async def attach(handle: Handle) -> None:
    await until_parked(handle)
    await handle.signal(ConfirmPaymentWorkflow.attach, AdminRequest("r1", "ops", "order-1"))


async def resolve(handle: Handle) -> None:
    await until_parked(handle)
    await handle.signal(ConfirmPaymentWorkflow.resolve, AdminRequest("r1", "ops", note="x"))


async def refund(handle: Handle) -> None:
    """An admin's refund of parked money, then the refund workflow's word that it is back."""
    await until_parked(handle)
    await handle.signal(ConfirmPaymentWorkflow.refund, AdminRequest("r1", "ops", reason="x"))
    for _ in range(400):
        if (await handle.query(ConfirmPaymentWorkflow.state)).refund_asked:
            break
        await asyncio.sleep(0.05)
    await handle.signal(ConfirmPaymentWorkflow.refunded, "refunded to the payer")


async def retry_while_escalated(handle: Handle) -> None:
    for _ in range(400):
        if (await handle.query(ConfirmPaymentWorkflow.state)).stuck:
            break
        await asyncio.sleep(0.05)
    for i in range(3):  # the first reissues at once, the next within the debounce wait
        await handle.signal(ConfirmPaymentWorkflow.retry, AdminRequest(f"r{i}", "ops"))


async def flood_then_attach(handle: Handle) -> None:
    """Enough retries on parked money to make the run continue as new, then an attach."""
    await until_parked(handle)
    for i in range(160):
        await handle.signal(ConfirmPaymentWorkflow.retry, AdminRequest(f"f{i}", "ops"))
        await until_parked(handle)
    await attach(handle)


class Captures(FlakyStore):
    """Matched at once, and the authorization captured (issue 26)."""

    def __init__(self) -> None:
        super().__init__(failures=0)

    @activity.defn(name="capture_payment")
    async def capture_payment(self, c: Confirmation) -> None:
        self.effects.add(("capture", c.transaction_id))

    def all(self) -> list[Any]:
        return [*super().all(), self.capture_payment]


# Scenarios whose confirmation is an authorization, to be captured.
AUTHORIZATIONS = {"authorized_captured", "lean_authorized_captured"}

SCENARIOS: dict[str, tuple[Callable[[], FakeActivities], Drive]] = {
    "paid": (lambda: FlakyStore(failures=0), nothing),
    "parked_then_attached": (FakeActivities, attach),
    "parked_then_resolved": (FakeActivities, resolve),
    "parked_then_refunded": (FakeActivities, refund),
    "store_escalated_then_recovered": (lambda: FlakyStore(failures=12), nothing),
    "store_escalated_then_retried": (lambda: FlakyStore(failures=14), retry_while_escalated),
    "continued_as_new": (FakeActivities, flood_then_attach),
    "authorized_captured": (Captures, nothing),
    # Recorded with the lean happy path (issue 24): steps 2 and 4 together, then 5, 6 and 8.
    "lean_paid": (lambda: FlakyStore(failures=0), nothing),
    "lean_authorized_captured": (Captures, nothing),
    "lean_parked_then_attached": (FakeActivities, attach),
    "lean_store_escalated_then_recovered": (lambda: FlakyStore(failures=12), nothing),
    "lean_store_escalated_then_retried": (lambda: FlakyStore(failures=14), retry_while_escalated),
}


class FakeOrderActivities:
    def __init__(self, failures: int = 0, confirming: bool = False) -> None:
        self.paid = False
        self.failures = failures  # place_order fails this often first, as with the DB down
        self.confirming = confirming  # the window ends while a stored payment is confirmed

    @activity.defn(name="expire_order")
    async def expire_order(self, order_id: str) -> CloseResult:
        if self.confirming:
            return CloseResult(False, "awaiting_payment")
        return CloseResult(not self.paid, "paid" if self.paid else "cancelled")

    @activity.defn(name="place_order")
    async def place_order(self, order_id: str) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("database down")
        return True

    def all(self) -> list[Any]:
        return [self.expire_order, self.place_order]


OrderHandle = WorkflowHandle[OrderLifecycleWorkflow, str]


async def order_paid(handle: OrderHandle) -> None:
    await handle.signal(OrderLifecycleWorkflow.paid)


async def order_closed(handle: OrderHandle) -> None:
    await handle.signal(OrderLifecycleWorkflow.closed, OrderClosed("customer"))


async def order_left(handle: OrderHandle) -> None:
    pass


async def order_paid_after_window(handle: OrderHandle) -> None:
    await asyncio.sleep(2.0)  # past the window: expiry found the payment stored, and waits
    await handle.signal(OrderLifecycleWorkflow.paid)


ORDER_SCENARIOS: dict[str, tuple[float, Callable[[OrderHandle], Awaitable[None]], int]] = {
    "order_expired": (1.0, order_left, 0),
    "order_paid": (60.0, order_paid, 0),
    "order_cancelled": (60.0, order_closed, 0),
    # The local attempts fail (the database is down), the server-retried activity places it.
    "order_paid_place_retried": (60.0, order_paid, 4),
    # The window ends while a stored payment is being confirmed: not cancelled, then paid.
    "order_window_ended_while_confirming": (1.0, order_paid_after_window, 0),
}


async def record_order(env: WorkflowEnvironment, name: str) -> None:
    window, drive, failures = ORDER_SCENARIOS[name]
    queue = str(uuid.uuid4())
    expires = datetime.now(UTC) + timedelta(seconds=window)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[OrderLifecycleWorkflow],
        activities=FakeOrderActivities(
            failures, confirming=name == "order_window_ended_while_confirming"
        ).all(),
    ):
        handle = await env.client.start_workflow(
            OrderLifecycleWorkflow.run,
            OrderRun("order-1", expires.isoformat()),
            id=f"replay-{name}",
            task_queue=queue,
        )
        await drive(handle)
        await handle.result()
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.run1.json").write_text(history.to_json())


@pytest.mark.parametrize("name", sorted(ORDER_SCENARIOS))
async def test_recorded_order_history_replays(temporal_env: WorkflowEnvironment, name: str) -> None:
    if RECORD or os.environ.get("PAYSAGA_RECORD_HISTORY") == name:
        await record_order(temporal_env, name)
    path = HISTORIES / f"{name}.run1.json"
    assert path.exists(), f"no recorded history for {name}"
    replayer = Replayer(workflows=[OrderLifecycleWorkflow])
    await replayer.replay_workflow(WorkflowHistory.from_json(f"replay-{name}", path.read_text()))


async def record(env: WorkflowEnvironment, name: str) -> None:
    make, drive = SCENARIOS[name]
    queue = str(uuid.uuid4())
    confirmation = replace(CONFIRMATION, needs_capture=name in AUTHORIZATIONS)
    async with Worker(
        env.client, task_queue=queue, workflows=[ConfirmPaymentWorkflow], activities=make().all()
    ):
        handle: Handle = await env.client.start_workflow(
            ConfirmPaymentWorkflow.run,
            ConfirmationRun(confirmation, FAST, lean=name.startswith("lean_")),
            id=f"replay-{name}",
            task_queue=queue,
        )
        await drive(handle)
        await handle.result()
    HISTORIES.mkdir(exist_ok=True)
    runs = [e async for e in env.client.list_workflows(f'TaskQueue = "{queue}"')]
    for i, run in enumerate(sorted(runs, key=lambda e: e.start_time)):
        history = await env.client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        (HISTORIES / f"{name}.run{i + 1}.json").write_text(history.to_json())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_recorded_history_replays(temporal_env: WorkflowEnvironment, name: str) -> None:
    if RECORD or os.environ.get("PAYSAGA_RECORD_HISTORY") == name:
        await record(temporal_env, name)
    files = sorted(HISTORIES.glob(f"{name}.run*.json"))
    assert files, f"no recorded history for {name}"
    if name == "continued_as_new":
        assert len(files) > 1  # the first run ended by continuing as new
    replayer = Replayer(workflows=[ConfirmPaymentWorkflow])
    for path in files:
        history = WorkflowHistory.from_json(f"replay-{name}", path.read_text())
        await replayer.replay_workflow(history)  # raises on a non-deterministic change
