"""The engine's reference points: workflows whose activities are no-ops (no database), on the
same Temporal server as paysaga, unsandboxed like paysaga's worker. Their worker runs as its
own process: `python -m bench.noop ADDRESS TASK_QUEUE`.

- `BenchFiveNoop`: five no-op local activities one after another; the ceiling the issue's
  "capacity as a share of the engine" is measured against.
- `BenchNoop`: the confirmation's happy path as it stands: validate, store and mark paid one
  after another, each followed by the confirmation's search-attribute upsert, then audit and
  ticket side by side, and the final upsert.
- `BenchNoopWithOrder`: the same, for an order whose own waiting workflow (`BenchOrderNoop`,
  started at "checkout") is signalled by the last step's activity, as paysaga's confirmation
  tells the order's lifecycle; that workflow then places the order (one local activity) and
  ends with an upsert.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from domain.orders import OrderState
from domain.payments import PaymentState
from domain.workflow_names import ORDER_STATE, PAID, PAYMENT_STATE

TIMEOUT = timedelta(seconds=10)
STEPS = (
    ("validate", PaymentState.VALIDATED),
    ("store", PaymentState.STORED),
    ("mark_paid", PaymentState.PAID),
)


class NoopActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="bench_noop")
    async def noop(self, step: str) -> str:
        return step

    @activity.defn(name="bench_tell_order")
    async def tell_order(self, workflow_id: str) -> None:
        await self.client.get_workflow_handle(workflow_id).signal(PAID)


def _step(step: str) -> workflow.ActivityHandle[str]:
    return workflow.start_local_activity_method(
        NoopActivities.noop, step, start_to_close_timeout=TIMEOUT
    )


@workflow.defn(name="BenchFiveNoop")
class FiveNoopWorkflow:
    @workflow.run
    async def run(self, tx: str) -> str:
        for step in ("one", "two", "three", "four", "five"):
            await _step(step)
        return tx


async def confirmation_shape(order_workflow: str | None) -> None:
    for step, state in STEPS:
        if step == "mark_paid" and order_workflow is not None:
            # paysaga's mark-paid activity signals the order's workflow itself.
            await workflow.execute_local_activity_method(
                NoopActivities.tell_order, order_workflow, start_to_close_timeout=TIMEOUT
            )
        else:
            await _step(step)
        workflow.upsert_search_attributes([PAYMENT_STATE.value_set(state.value)])
    await asyncio.gather(_step("audit"), _step("ticket"))
    workflow.upsert_search_attributes([PAYMENT_STATE.value_set(PaymentState.COMPLETED.value)])


@workflow.defn(name="BenchNoop")
class NoopWorkflow:
    @workflow.run
    async def run(self, tx: str) -> str:
        await confirmation_shape(None)
        return tx


@workflow.defn(name="BenchNoopWithOrder")
class NoopWithOrderWorkflow:
    @workflow.run
    async def run(self, order_workflow: str) -> str:
        await confirmation_shape(order_workflow)
        return order_workflow


@workflow.defn(name="BenchOrderNoop")
class OrderNoopWorkflow:
    def __init__(self) -> None:
        self._paid = False

    @workflow.run
    async def run(self, order_id: str) -> str:
        await workflow.wait_condition(lambda: self._paid, timeout=timedelta(hours=2))
        await _step("place")
        workflow.upsert_search_attributes([ORDER_STATE.value_set(OrderState.PAID.value)])
        return order_id

    @workflow.signal(name=PAID)
    def paid(self) -> None:
        self._paid = True


WORKFLOWS = [FiveNoopWorkflow, NoopWorkflow, NoopWithOrderWorkflow, OrderNoopWorkflow]


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    acts = NoopActivities(client)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[acts.noop, acts.tell_order],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
