"""Connecting to Temporal and building the worker: one place, used by the CLI and the tests."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import py_compile
import socket
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, Interceptor, WorkflowHistory
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.capture import CaptureActivities
from activities.confirmation import ConfirmationActivities
from activities.fulfilment import AcceptanceWindow
from activities.notifications import MailConfig, NotificationActivities
from activities.orders import OrderActivities
from activities.reconciliation import ReconcileInput, ReconciliationActivities
from activities.refunds import RefundActivities
from activities.windows import PaymentWindow, Window, WindowActivities
from db.escalations import CircuitWatch, Recipients
from domain.workflow_names import ORDER_ID, ORDER_STATE, PAYMENT_STATE, TRANSACTION_ID
from gateways import Gateways
from gateways.api import GatewayMetrics
from mail.smtp import SmtpServer
from observability.logs import LogContext
from paysaga.settings import Settings
from workflows.mail_relay import MailRelayWorkflow
from workflows.order_lifecycle import OrderLifecycleWorkflow
from workflows.payment_confirmation import ConfirmPaymentWorkflow
from workflows.reconciliation import ReconcileWorkflow, ensure_schedule
from workflows.refund import RefundWorkflow
from workflows.window_keeper import WindowKeeperWorkflow

SEARCH_ATTRIBUTES = {
    key.name: "Keyword" for key in (PAYMENT_STATE, ORDER_ID, TRANSACTION_ID, ORDER_STATE)
}
WORKFLOWS = [
    ConfirmPaymentWorkflow,
    # No longer started (the window keeper holds payment windows); registered so that the
    # lifecycles running when a worker of this version takes over still finish.
    OrderLifecycleWorkflow,
    ReconcileWorkflow,
    MailRelayWorkflow,
    RefundWorkflow,
    WindowKeeperWorkflow,
]


async def connect(
    settings: Settings,
    wait_seconds: float = 60.0,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """Connects, waiting while a just-started server says "frontend is not healthy yet"."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                interceptors=interceptors,
                runtime=runtime,
            )
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def precompile_workflows() -> None:
    """Writes bytecode for the workflow modules, whatever PYTHONDONTWRITEBYTECODE says.

    The sandbox executes a workflow's module afresh for every workflow run. Without bytecode
    on disk that means compiling its source every time: a tenth of the worker's CPU under
    load. Where it cannot write (a read-only install), pip has usually compiled them already.
    """
    for module in sorted({cls.__module__ for cls in WORKFLOWS}):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        try:
            py_compile.compile(
                spec.origin, cfile=importlib.util.cache_from_source(spec.origin), doraise=True
            )
        except (OSError, py_compile.PyCompileError) as err:
            logging.getLogger("paysaga.worker").warning("no bytecode for %s: %s", module, err)


def build_worker(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    task_queue: str,
    *,
    sandboxed: bool = False,
    mail: MailConfig | None = None,
    gateways: Gateways | None = None,
) -> Worker:
    """The worker, by default without the workflow sandbox.

    The sandbox executes the workflow module afresh for every workflow run and runs each
    activation through its import and proxy layers: without it the benchmark's throughput
    rose from 38 to 52 confirmations/s. Its guard rails (no clock, randomness or I/O in
    workflow code) move into the test suite: every integration test ends by replaying the
    histories it made through the sandboxed replayer (`replay_failures`), so a forbidden
    call or a non-deterministic change fails a test instead of a payment.
    PAYSAGA_WORKFLOW_SANDBOX=true turns the sandbox back on.

    `mail`: the relay's activity is registered only where SMTP is configured. `gateways`:
    their APIs look payments up and refund (online mode); None, offline.
    """
    if sandboxed:
        precompile_workflows()
    orders = OrderActivities(sessions, client, gateways)
    # Offline (no gateway with an API) there is nobody to ask before a window closes.
    online = gateways is not None and any(gateway.api is not None for gateway in gateways)

    def windows() -> list[Window]:
        return [
            PaymentWindow(sessions, orders.look_up_payment if online else None),
            AcceptanceWindow(sessions, client),  # issue 28: the vendor's time to accept
        ]

    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner(),
        activities=[
            *ConfirmationActivities(sessions, client, mail.domain if mail else None).all(),
            *CaptureActivities(gateways).all(),
            *orders.all(),
            WindowActivities(windows).keep_windows,
            *RefundActivities(sessions, gateways, client).all(),
            ReconciliationActivities(
                sessions, client, mail.escalations if mail else None
            ).reconcile,
            *([NotificationActivities(sessions, mail).relay_mail] if mail else []),
        ],
        # The client's interceptors (tracing) apply to the worker too; this one adds the
        # workflow's ids to every line an activity logs.
        interceptors=[LogContext()],
    )


def escalation_recipients(settings: Settings) -> Recipients:
    """Where a process's escalations are mailed: nowhere without a mail relay (SMTP)."""
    mail = mail_config(settings)
    return mail.escalations if mail is not None else Recipients()


def gateway_metrics(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    metrics: GatewayMetrics,
    escalations: Counter,
) -> CircuitWatch:
    """A process's gateway metrics, escalating a circuit's opening (`db.escalations`)."""
    return CircuitWatch(
        metrics,
        sessions,
        escalation_recipients(settings),
        lambda kind: escalations.labels(kind).inc(),
    )


def mail_config(settings: Settings) -> MailConfig | None:
    if not settings.smtp_host:
        return None
    return MailConfig(
        smtp=SmtpServer(settings.smtp_host, settings.smtp_port),
        sender=settings.smtp_from,
        organizer=settings.organizer_name,
        public_url=settings.public_url,
        admins=settings.admins,
        senders=settings.mail_senders,
        render_processes=settings.mail_render_processes,
        give_up_after=timedelta(seconds=settings.mail_give_up_seconds),
    )


def metrics_runtime() -> tuple[Runtime, str]:
    """A runtime whose Temporal SDK metrics are served on an internal port (the worker's own
    `/metrics` re-exposes them); returns it and that endpoint's URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}", durations_as_seconds=True)
        )
    )
    return runtime, f"http://127.0.0.1:{port}/metrics"


async def replay_failures(
    client: Client, query: str, workflows: Sequence[type] = WORKFLOWS
) -> tuple[int, dict[str, str]]:
    """Replays the histories `query` finds through the sandboxed replayer.

    Returns how many it replayed and, per run id, the failures. A non-deterministic change
    to a workflow, or a call the sandbox forbids (clock, randomness, I/O), shows up here
    against real histories.
    """
    replayer = Replayer(workflows=workflows, workflow_runner=SandboxedWorkflowRunner())
    replayed = 0

    async def histories() -> AsyncIterator[WorkflowHistory]:
        nonlocal replayed
        async for history in client.list_workflows(query).map_histories():
            replayed += 1
            yield history

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    return replayed, {run_id: repr(err) for run_id, err in results.replay_failures.items()}


async def ensure_reconciliation_schedule(client: Client, settings: Settings) -> None:
    await ensure_schedule(
        client,
        ReconcileInput(
            settings.task_queue,
            settings.unmatched_alert_seconds,
            every_seconds=settings.reconcile_every_seconds,
        ),
        settings.reconcile_every_seconds,
    )
