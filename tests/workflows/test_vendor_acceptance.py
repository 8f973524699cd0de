"""The confirmation's wait for a vendor's acceptance (SEQ-BP-002, issue 28), with mocked
activities: the `fulfilment` signal decides; without it the order's row is read once the
window (plus its grace) has passed, and read again while it still says pending; no history
gains a patch marker (a patch asked mid-run broke replay on main), and an order that needs no
acceptance gains not one command (no search attribute, no read).

The row-reading paths run unsandboxed so the module's grace can be shortened for the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from activities.confirmation_inputs import ValidateInput, Validation
from domain.fulfilment import FulfilmentSeen, VendorAnswer
from domain.statuses import FulfilmentStatus
from domain.workflow_names import ORDER_STATE
from tests.workflows.test_payment_confirmation import FakeActivities, Handle, started
from workflows import confirmation_vendor
from workflows.payment_confirmation import ConfirmPaymentWorkflow

PENDING = FulfilmentStatus.PENDING_VENDOR_ACCEPTANCE


class VendorOrder(FakeActivities):
    """Matched at once to an order with an acceptance window of `accept_seconds` (None: an
    ordinary order); its row says what `rows` says, one answer per read (the last repeats)."""

    def __init__(self, accept_seconds: int | None, rows: list[str | None] | None = None) -> None:
        super().__init__()
        self.accept_seconds = accept_seconds
        self.rows = rows or [PENDING]
        self.reads = 0

    @activity.defn(name="validate_confirmation")
    async def validate(self, inp: ValidateInput) -> Validation:
        return Validation(
            "matched", order_id="order-1", payment_id=7, accept_seconds=self.accept_seconds
        )

    @activity.defn(name="fulfilment_of")
    async def fulfilment_of(self, order_id: str) -> FulfilmentSeen:
        row = self.rows[min(self.reads, len(self.rows) - 1)]
        self.reads += 1
        return FulfilmentSeen(row, datetime.now(UTC).isoformat())

    def all(self) -> list[Callable[..., Any]]:
        return [*super().all(), self.fulfilment_of]


async def order_state(handle: Handle) -> str | None:
    attributes = (await handle.describe()).typed_search_attributes
    return attributes.get(ORDER_STATE)


async def until_waiting(handle: Handle) -> None:
    for _ in range(400):
        state = await handle.query(ConfirmPaymentWorkflow.state)
        if state.accept_by is not None and await order_state(handle) == PENDING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the confirmation never waited for its vendor")


async def patches(handle: Handle) -> list[str]:
    """The ids of `workflow.patched` markers (local activities record markers of their own),
    in the order the history has them."""
    history = await handle.fetch_history()
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


async def replays(handle: Handle) -> None:
    await Replayer(workflows=[ConfirmPaymentWorkflow]).replay_workflow(await handle.fetch_history())


@pytest.mark.parametrize(
    ("answer", "ticket"),
    [(FulfilmentStatus.ACCEPTED, "ticket-for-order-1"), (FulfilmentStatus.REJECTED, None)],
)
async def test_the_signal_decides_and_only_an_accepted_order_gets_its_ticket(
    temporal_env: WorkflowEnvironment, answer: FulfilmentStatus, ticket: str | None
) -> None:
    fake = VendorOrder(accept_seconds=900)
    worker, handle = await started(temporal_env, fake)
    async with worker:
        await until_waiting(handle)
        await handle.signal(
            ConfirmPaymentWorkflow.fulfilment, VendorAnswer("order-1", answer, "vendor:acme")
        )
        # A second answer (the window's, after the vendor's) changes nothing.
        await handle.signal(
            ConfirmPaymentWorkflow.fulfilment,
            VendorAnswer("order-1", FulfilmentStatus.REJECTED, "system:vendor_window", "timeout"),
        )
        outcome = await handle.result()
        state = await handle.query(ConfirmPaymentWorkflow.state)
    assert (outcome.outcome, outcome.ticket_code) == ("paid", ticket)
    assert (state.state, state.fulfilment) == ("completed", answer)
    assert await order_state(handle) == answer
    assert fake.reads == 0  # the signal came: the row was never read
    assert await patches(handle) == []
    await replays(handle)


async def test_an_ordinary_order_issues_no_command_more(temporal_env: WorkflowEnvironment) -> None:
    fake = VendorOrder(accept_seconds=None)
    worker, handle = await started(temporal_env, fake)
    async with worker:
        outcome = await handle.result()
    assert (outcome.outcome, outcome.ticket_code) == ("paid", "ticket-for-order-1")
    assert await patches(handle) == []
    assert await order_state(handle) is None
    assert fake.reads == 0


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds instead of minutes (read by the unsandboxed workflow at run time)."""
    monkeypatch.setattr(confirmation_vendor, "GRACE", timedelta(seconds=1))
    monkeypatch.setattr(confirmation_vendor, "RECHECK", timedelta(seconds=1))


@pytest.mark.usefixtures("short_grace")
async def test_without_a_signal_the_row_decides_once_the_window_is_over(
    temporal_env: WorkflowEnvironment,
) -> None:
    # Pending at the first read (the keeper behind), rejected at the second.
    fake = VendorOrder(accept_seconds=1, rows=[PENDING, FulfilmentStatus.REJECTED])
    worker, handle = await started(temporal_env, fake, UnsandboxedWorkflowRunner())
    async with worker:
        outcome = await asyncio.wait_for(handle.result(), timeout=30)
    assert (outcome.outcome, outcome.ticket_code) == ("paid", None)
    assert fake.reads == 2
    assert await order_state(handle) == FulfilmentStatus.REJECTED


@pytest.mark.usefixtures("short_grace")
async def test_a_row_that_waits_for_no_vendor_ends_the_wait_with_a_ticket(
    temporal_env: WorkflowEnvironment,
) -> None:
    fake = VendorOrder(accept_seconds=1, rows=[None])
    worker, handle = await started(temporal_env, fake, UnsandboxedWorkflowRunner())
    async with worker:
        outcome = await asyncio.wait_for(handle.result(), timeout=30)
    assert (outcome.outcome, outcome.ticket_code) == ("paid", "ticket-for-order-1")
    assert fake.reads == 1
