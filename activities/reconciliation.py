"""The minute sweep behind the reconciliation schedule: repair what is safe, report the rest.

Safe to repair automatically:
- a payment stored `paid` whose order still awaits payment and whose confirmation workflow is
  no longer running (terminated, or forgotten after retention): the order is marked paid by
  the same guarded code the workflow's activity runs (`db.orders.mark_paid`), with the same
  event and audit keys, so it happens once;
- a confirmation whose failing step the server will not try again within the sweep's period
  (a long backoff): it gets `retry`, as an admin would send it. One that is retrying on its
  own (an attempt running, or the next one due before the next sweep) is left alone, so the
  sweep adds nothing to its history.
- a refund recorded `pending` with no workflow running to ask for it (Temporal was down when
  it was asked: an owner who gave up, an admin's stock withdrawal): its workflow is started
  now, as the request would have (idempotent: one already running is the same refund, and
  the same ask sends the gateway the same idempotency key).
Reported, never guessed: money parked for an admin (unmatched, amount mismatch, already paid,
late payment) and unmatched cases older than the alert threshold.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from db import escalations, journal
from db.models import Order, Payment, ReconciliationCase, Refund
from db.orders import NotPayable, mark_paid
from domain.confirmation import AdminAction, ConfirmationState, order_paid_record
from domain.payments import (
    AdminRequest,
    PaymentState,
    RefundRun,
    confirmation_workflow_id,
    refund_workflow_id,
)
from domain.statuses import CaseState, OrderStatus, PaymentStatus, RefundStatus
from domain.workflow_names import CONFIRM_PAYMENT, PAYMENT_STATE, REFUND, UPDATES
from observability.metrics import ESCALATIONS
from workflows.confirmation_client import next_attempt_within, running_state
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.reconciliation")
ACTOR = "system:reconciliation"
REPORT_LIMIT = 100  # entries per list in a sweep's report; the totals count them all


@dataclass(frozen=True)
class ReconcileInput:
    task_queue: str
    unmatched_alert_seconds: int = 3600
    settle_seconds: int = 60  # younger stored-not-paid payments are a confirmation in flight
    every_seconds: int = 60  # the sweep's period: a step retried sooner is left to the server
    # A pending refund younger than this may still be having its workflow started.
    unstarted_after_seconds: int = 30


@dataclass
class ReconcileReport:
    orders_repaired: list[str] = field(default_factory=list)
    # Always empty since the window keeper (no workflow per order to start); kept so the
    # reports in recorded histories still decode.
    lifecycles_started: list[str] = field(default_factory=list)
    refunds_started: list[str] = field(default_factory=list)  # "provider:transaction_id"
    retried: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # the first REPORT_LIMIT of them
    parked_total: int = 0
    stale_unmatched: list[dict[str, Any]] = field(default_factory=list)  # oldest first, capped
    stale_unmatched_total: int = 0
    escalated: int = 0  # escalations this sweep recorded


class ReconciliationActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        escalate_to: escalations.Recipients | None = None,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.escalate_to = escalate_to or escalations.Recipients()

    @activity.defn
    async def reconcile(self, inp: ReconcileInput) -> ReconcileReport:
        report = ReconcileReport()
        info = activity.info()
        run = str(info.workflow_run_id)  # one retry per sweep run and confirmation
        await self._unstarted_refunds(inp, report)
        await self._stored_not_paid(inp, run, report)
        await self._stuck_workflows(inp, run, report)
        await self._stale_unmatched(inp, report)
        await self._escalate(inp, report)
        if report.refunds_started:
            log.warning("reconciliation: started %d refund(s)", len(report.refunds_started))
        if report.orders_repaired or report.retried or report.stale_unmatched:
            log.warning(
                "reconciliation: repaired %d order(s), retried %d confirmation(s), "
                "%d parked for an admin, %d unmatched case(s) older than %d s",
                len(report.orders_repaired),
                len(report.retried),
                report.parked_total,
                report.stale_unmatched_total,
                inp.unmatched_alert_seconds,
            )
        return report

    async def _unstarted_refunds(self, inp: ReconcileInput, report: ReconcileReport) -> None:
        """Pending refunds with no answer yet and no workflow running. Starting one twice is
        harmless: the same ask sends the same gateway key."""
        for provider, transaction_id in await self._pending_without_workflow(inp):
            run = await self._still_unstarted(provider, transaction_id)
            if run is None:
                continue
            try:
                await start_refund(self.client, inp.task_queue, run)
            except RPCError as exc:  # the next sweep tries again
                log.warning("refund %s %s: not started: %s", provider, transaction_id, exc)
                continue
            report.refunds_started.append(f"{provider}:{transaction_id}")

    async def _pending_without_workflow(self, inp: ReconcileInput) -> list[tuple[str, str]]:
        """One visibility query for the running refunds, so refunds waiting days for an
        operator cost nothing; the first REPORT_LIMIT pending ones not among them."""
        running = set()
        query = (
            f'WorkflowType = "{REFUND}" AND ExecutionStatus = "Running" '
            f'AND TaskQueue = "{inp.task_queue}"'
        )
        async for execution in self.client.list_workflows(query):
            running.add(execution.id)
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Refund.provider, Refund.transaction_id)
                    .where(
                        Refund.status == RefundStatus.PENDING,
                        Refund.gateway_refund_id.is_(None),  # answered (partial): a case
                        Refund.created_at
                        < func.now() - timedelta(seconds=inp.unstarted_after_seconds),
                    )
                    .order_by(Refund.created_at)
                )
            ).all()
        return [(p, tx) for p, tx in rows if refund_workflow_id(p, tx) not in running][
            :REPORT_LIMIT
        ]

    async def _still_unstarted(self, provider: str, transaction_id: str) -> RefundRun | None:
        """The refund to start, read again after its workflow was seen closed (None: started
        since the list was read, not checkable now, or finished meanwhile)."""
        handle = self.client.get_workflow_handle(refund_workflow_id(provider, transaction_id))
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                return None  # started since the list was read
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                log.warning("refund %s %s: not checked: %s", provider, transaction_id, exc)
                return None
        async with self.sessions() as s:
            still = (
                await s.execute(
                    select(Refund.requested_by, Order.status)
                    .outerjoin(Order, Order.id == Refund.order_id)
                    .where(
                        Refund.provider == provider,
                        Refund.transaction_id == transaction_id,
                        Refund.status == RefundStatus.PENDING,
                        Refund.gateway_refund_id.is_(None),
                    )
                )
            ).one_or_none()
        if still is None:
            return None  # its workflow finished it meanwhile
        requested_by, order_status = still
        # Parked money (never stored, or stored for an order cancelled first) settles its
        # parked confirmation once back, as the admin's or the late payment's refund does.
        parked = order_status in (None, OrderStatus.CANCELLED)
        return RefundRun(provider, transaction_id, requested_by, settles_parked=parked)

    async def _retry_if_waiting(
        self,
        inp: ReconcileInput,
        workflow_id: str,
        state: ConfirmationState,
        run: str,
        report: ReconcileReport,
    ) -> None:
        if not state.stuck or workflow_id in report.retried:
            return
        if await next_attempt_within(self.client, workflow_id, inp.every_seconds):
            return  # retrying on its own
        request = AdminRequest(request_id=f"sweep:{run}", admin=ACTOR)
        retry = UPDATES[AdminAction.RETRY]  # the signal of that name, as an admin's CLI sends
        await self.client.get_workflow_handle(workflow_id).signal(retry, request)
        report.retried.append(workflow_id)

    async def _stored_not_paid(
        self, inp: ReconcileInput, run: str, report: ReconcileReport
    ) -> None:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Payment.provider, Payment.transaction_id, Payment.order_id)
                    .join(Order, Order.id == Payment.order_id)
                    .where(
                        Payment.status == PaymentStatus.PAID,
                        Order.status == OrderStatus.AWAITING_PAYMENT,
                        Payment.confirmed_at < func.now() - timedelta(seconds=inp.settle_seconds),
                    )
                )
            ).all()
        for provider, transaction_id, order_id in rows:
            assert transaction_id is not None  # a paid payment has its transaction
            workflow_id = confirmation_workflow_id(provider, transaction_id)
            state = await running_state(self.client, workflow_id)
            if state is None:
                if await self._mark_paid(provider, transaction_id, order_id):
                    report.orders_repaired.append(str(order_id))
            else:
                await self._retry_if_waiting(inp, workflow_id, state, run, report)

    async def _mark_paid(self, provider: str, transaction_id: str, order_id: uuid.UUID) -> bool:
        """5 for a confirmation whose workflow is gone: the workflow's own guarded update."""
        async with self.sessions.begin() as s:
            try:
                if not await mark_paid(s, order_id, provider, transaction_id):
                    return False
            except NotPayable:
                return False  # cancelled meanwhile: a case for an admin, not a repair
            record = order_paid_record(str(order_id), provider, transaction_id, ACTOR, repair=True)
            await journal.write_audit(s, [record])
        log.warning(
            "reconciliation marked order %s paid (payment %s %s)",
            order_id,
            provider,
            transaction_id,
        )
        return True

    async def _stuck_workflows(
        self, inp: ReconcileInput, run: str, report: ReconcileReport
    ) -> None:
        query = (
            f'WorkflowType = "{CONFIRM_PAYMENT}" AND ExecutionStatus = "Running" '
            f'AND {PAYMENT_STATE.name} = "{PaymentState.NEEDS_RECONCILIATION}" '
            f'AND TaskQueue = "{inp.task_queue}"'
        )
        async for execution in self.client.list_workflows(query):
            state = await running_state(self.client, execution.id)
            if state is None:
                continue
            await self._retry_if_waiting(inp, execution.id, state, run, report)
            if state.parked:
                report.parked_total += 1
                if len(report.parked) < REPORT_LIMIT:
                    report.parked.append(execution.id)

    async def _escalate(self, inp: ReconcileInput, report: ReconcileReport) -> None:
        """Cases a person must act on, each escalated once: a failed refund at once, parked
        money and stuck confirmations once older than the alert age."""
        async with self.sessions.begin() as s:
            cases = await escalations.cases_to_escalate(
                s, timedelta(seconds=inp.unmatched_alert_seconds)
            )
            alarms = [escalations.case_alarm(case) for case in cases]
            recorded = [a for a in alarms if await escalations.escalate(s, a, self.escalate_to)]
        for alarm in recorded:
            ESCALATIONS.labels(alarm.kind).inc()
            log.error("escalation %s: %s Act: %s", alarm.kind, alarm.summary, alarm.command)
        report.escalated = len(recorded)

    async def _stale_unmatched(self, inp: ReconcileInput, report: ReconcileReport) -> None:
        """Unmatched money older than the alert age: the oldest REPORT_LIMIT in the report (a
        workflow result stays small however much is parked), with the total."""
        stale = (
            ReconciliationCase.state == CaseState.OPEN,
            ReconciliationCase.kind == "unmatched",
            ReconciliationCase.opened_at
            < func.now() - timedelta(seconds=inp.unmatched_alert_seconds),
        )
        async with self.sessions() as s:
            report.stale_unmatched_total = int(
                await s.scalar(select(func.count()).select_from(ReconciliationCase).where(*stale))
                or 0
            )
            cases = await s.scalars(
                select(ReconciliationCase)
                .where(*stale)
                .order_by(ReconciliationCase.opened_at)
                .limit(REPORT_LIMIT)
            )
            for case in cases:
                report.stale_unmatched.append(
                    {
                        "provider": case.provider,
                        "transaction_id": case.transaction_id,
                        "amount": case.amount,
                        "currency": case.currency,
                        "opened_at": case.opened_at.isoformat(),
                    }
                )
