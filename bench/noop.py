"""The reference point "engine ceiling": a workflow with the same activities as the
confirmation's happy path (validate, store, mark paid, then audit and ticket side by side),
local activities as there, each a no-op, no database. Its worker runs as its own process: `python -m bench.noop ADDRESS TASK_QUEUE`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def noop(step: str) -> str:
    return step


@workflow.defn(name="BenchNoop")
class NoopWorkflow:
    @workflow.run
    async def run(self, tx: str) -> str:
        timeout = timedelta(seconds=10)
        for step in ("validate", "store", "mark_paid"):
            await workflow.execute_local_activity(noop, step, start_to_close_timeout=timeout)
        await asyncio.gather(
            workflow.execute_local_activity(noop, "audit", start_to_close_timeout=timeout),
            workflow.execute_local_activity(noop, "ticket", start_to_close_timeout=timeout),
        )
        return tx


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[NoopWorkflow], activities=[noop]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
