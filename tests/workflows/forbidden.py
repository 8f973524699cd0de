"""A workflow that breaks the rules: in a module of its own, as the sandbox imports it."""

from __future__ import annotations

import time

from temporalio import workflow


@workflow.defn(name="ReadsTheClock")
class ReadsTheClock:
    @workflow.run
    async def run(self) -> float:
        return time.time()  # forbidden in workflow code: differs on every replay
