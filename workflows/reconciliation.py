"""`Reconcile`: started every minute by the `paysaga-reconciliation` Temporal Schedule.

It replaces the hand-built failure-log table, minute scheduler and retry topic of the
resilience seed: the confirmation workflows are the durable failure records, and this sweep
only nudges the stuck ones and repairs what has no workflow left to do it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconcileInput, ReconcileReport, ReconciliationActivities
    from domain.workflow_names import RECONCILE

SCHEDULE_ID = "paysaga-reconciliation"


@workflow.defn(name=RECONCILE)
class ReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        return await workflow.execute_activity_method(
            ReconciliationActivities.reconcile,
            inp,
            start_to_close_timeout=timedelta(seconds=50),
            # The next run is a minute away; a failed sweep is simply the next one's work.
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
        )


def reconciliation_schedule(inp: ReconcileInput, every_seconds: int) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            inp,
            id=f"{SCHEDULE_ID}-run",
            task_queue=inp.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedule(
    client: Client, inp: ReconcileInput, every_seconds: int, schedule_id: str = SCHEDULE_ID
) -> None:
    """Created at worker start; a second worker (or a restart) updates it to the same thing."""
    schedule = reconciliation_schedule(inp, every_seconds)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def _same(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(_same)
