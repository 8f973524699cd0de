"""The worker runs without the workflow sandbox (paysaga.temporal.build_worker); its guard
rails live in the test suite, which replays every history an integration test made through
the sandboxed replayer. Here: that net catches what the unsandboxed worker lets through,
and passes real confirmation histories."""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.payments import AdminRequest
from paysaga.temporal import replay_failures
from tests.workflows.forbidden import ReadsTheClock
from tests.workflows.test_payment_confirmation import FakeActivities, run_with_signals
from workflows.payment_confirmation import ConfirmPaymentWorkflow


async def test_a_forbidden_call_passes_the_unsandboxed_worker_but_not_the_replay(
    temporal_env: WorkflowEnvironment,
) -> None:
    queue = str(uuid.uuid4())
    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[ReadsTheClock],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await temporal_env.client.execute_workflow(
            ReadsTheClock.run, id=f"clock-{queue}", task_queue=queue
        )
    replayed, failures = await replay_failures(
        temporal_env.client, f'TaskQueue = "{queue}"', workflows=[ReadsTheClock]
    )
    assert replayed == 1
    assert len(failures) == 1 and "time.time" in next(iter(failures.values()))


async def test_confirmation_histories_from_the_unsandboxed_worker_replay_cleanly(
    temporal_env: WorkflowEnvironment,
) -> None:
    queue = str(uuid.uuid4())
    attach = (ConfirmPaymentWorkflow.attach, AdminRequest("r1", "admin:ops", order_id="order-1"))
    outcome = await run_with_signals(
        temporal_env, FakeActivities(), [attach], queue=queue, runner=UnsandboxedWorkflowRunner()
    )
    assert outcome.outcome == "paid"
    assert await replay_failures(temporal_env.client, f'TaskQueue = "{queue}"') == (1, {})
