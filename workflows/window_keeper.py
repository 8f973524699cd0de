"""`WindowKeeper`: keeps the database's deadlines (payment windows, issue 24) round after round.

One per task queue (`window-keeper-{task_queue}`), started by every worker (the first start
wins; a restart finds it running). Each round is one heartbeating activity
(`activities.windows`) that closes what is due for a few minutes. When the database is down
the server retries the round with backoff (no history per attempt); when its worker dies the
heartbeat times out and another worker's poller takes the round over. The history grows by a
round's few events, so it continues as new every `workflows.rounds.ROUNDS` rounds.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.windows import WindowActivities
    from domain.workflow_names import WINDOW_KEEPER
    from workflows.rounds import ensure_running, run_rounds

# A deadline is never given up: retried without end, at most 10 s apart, so a window comes
# back within seconds of the database.
KEEPER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)


def keeper_workflow_id(task_queue: str) -> str:
    return f"window-keeper-{task_queue}"


@workflow.defn(name=WINDOW_KEEPER)
class WindowKeeperWorkflow:
    @workflow.run
    async def run(self, rounds_done: int = 0) -> None:
        await run_rounds(
            WindowActivities.keep_windows,
            rounds_done,
            start_to_close=timedelta(minutes=10),
            # A dead worker's round moves on within this (a window closes late by it).
            heartbeat=timedelta(seconds=10),
            retry=KEEPER_RETRY,
        )


async def ensure_window_keeper(client: Client, task_queue: str) -> None:
    """Starts the keeper unless it runs already."""
    await ensure_running(
        client, WindowKeeperWorkflow.run, keeper_workflow_id(task_queue), task_queue
    )
