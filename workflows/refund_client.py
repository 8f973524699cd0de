"""Starting a refund's workflow, and handing it the gateway's answer (signal-with-start)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from domain.payments import RefundNotice, RefundRun, refund_workflow_id
from domain.workflow_names import GATEWAY_ANSWER, REFUND


async def start_refund(client: Client, task_queue: str, run: RefundRun) -> None:
    """Idempotent: a refund already running is the one asked for again."""
    await client.start_workflow(
        REFUND,
        run,
        id=refund_workflow_id(run.provider, run.transaction_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=str,
    )


async def tell_refund(client: Client, task_queue: str, notice: RefundNotice) -> None:
    """The gateway's answer to the refund's workflow, started if none runs (a refund made in
    the gateway's dashboard, or a repeated notice after the workflow ended: applied once)."""
    await client.start_workflow(
        REFUND,
        # A refund made in the dashboard of money parked here settles its confirmation.
        RefundRun(
            notice.provider,
            notice.transaction_id,
            f"gateway:{notice.provider}",
            settles_parked=True,
        ),
        id=refund_workflow_id(notice.provider, notice.transaction_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=str,
        start_signal=GATEWAY_ANSWER,
        start_signal_args=[notice],
    )
