"""`MailRelay`: keeps the mail relay running, round after round, bounded.

One per task queue (`mail-relay-{task_queue}`), started by the worker when SMTP is set.
Each round is one activity that follows the event feed for a while
(`activities.notifications`); when the mail server is down the server retries that activity
with backoff, which adds no history, and the mails go out once it is back. The history grows
by one round's few events, so it continues as new every `workflows.rounds.ROUNDS` rounds.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities
    from domain.workflow_names import MAIL_RELAY
    from workflows.rounds import ensure_running, run_rounds

# 8a for mail: retried without end, its own policy, never touching payments or statuses.
MAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


def relay_workflow_id(task_queue: str) -> str:
    return f"mail-relay-{task_queue}"


@workflow.defn(name=MAIL_RELAY)
class MailRelayWorkflow:
    @workflow.run
    async def run(self, rounds_done: int = 0) -> None:
        await run_rounds(
            NotificationActivities.relay_mail,
            rounds_done,
            start_to_close=timedelta(minutes=5),
            heartbeat=timedelta(seconds=30),
            retry=MAIL_RETRY,
        )


async def ensure_mail_relay(client: Client, task_queue: str) -> None:
    """Starts the relay unless it runs already (a worker restart finds it running)."""
    await ensure_running(client, MailRelayWorkflow.run, relay_workflow_id(task_queue), task_queue)
