"""A workflow that keeps one heartbeating activity running, round after round, bounded: the
mail relay (`workflows.mail_relay`) and the window keeper (`workflows.window_keeper`).

The server retries a round that fails with the workflow's policy (no history per attempt);
the history grows by a round's few events, so the workflow continues as new every `ROUNDS`
rounds, or sooner if the server suggests it. One per task queue, started by every worker:
the first start wins, a restart finds it running.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.types import MethodAsyncNoParam, MethodAsyncSingleParam

ROUNDS = 100


async def run_rounds(
    activity: MethodAsyncNoParam[Any, Any],
    rounds_done: int,
    *,
    start_to_close: timedelta,
    heartbeat: timedelta,
    retry: RetryPolicy,
) -> NoReturn:
    for _ in range(ROUNDS - rounds_done):
        await workflow.execute_activity_method(
            activity,
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=heartbeat,
            retry_policy=retry,
        )
        if workflow.info().is_continue_as_new_suggested():
            break
    workflow.continue_as_new(0)


async def ensure_running(
    client: Client, run: MethodAsyncSingleParam[Any, int, None], workflow_id: str, task_queue: str
) -> None:
    """Starts the workflow unless it runs already."""
    await client.start_workflow(
        run,
        0,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
