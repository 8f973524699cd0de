"""The engine's ceilings, measured on the bench's own Temporal server: how many no-op
workflows of each reference shape (`bench.noop`) complete a second with 50 in flight (as many
a second as with 200, measured, and a shorter tail once the time limit stops new starts)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from bench.progress import Progress
from bench.stack import Stack
from domain.orders import OrderState
from domain.workflow_names import ORDER_ID, ORDER_STATE
from paysaga.devstack import spawn

QUEUE = "bench-noop"
IN_FLIGHT = 50


async def burst(n: int, one: Callable[[int], Awaitable[None]], limit: float) -> float:
    """Runs `one` up to n times, IN_FLIGHT at a time, starting no new one after `limit`
    seconds (a busy machine must not stretch the run); completions per second."""
    gate = asyncio.Semaphore(IN_FLIGHT)
    started = time.monotonic()
    done = 0

    async def limited(i: int) -> None:
        nonlocal done
        async with gate:
            if time.monotonic() - started < limit:
                await one(i)
                done += 1

    await asyncio.gather(*(limited(i) for i in range(n)))
    return round(done / (time.monotonic() - started), 1)


async def engine_ceilings(stack: Stack, n: int, limit: float, progress: Progress) -> dict[str, Any]:
    with ExitStack() as es:
        spawn(
            es,
            [sys.executable, "-m", "bench.noop", stack.temporal_address, QUEUE],
            stack.env,
            stack.root / "noop.log",
        )
        client = await Client.connect(stack.temporal_address)

        def simple(kind: str) -> Callable[[int], Awaitable[None]]:
            async def one(i: int) -> None:
                await client.execute_workflow(
                    kind, f"tx{i}", id=f"{kind}-{uuid.uuid4()}", task_queue=QUEUE
                )

            return one

        async def with_order(i: int) -> None:
            order_id = str(uuid.uuid4())
            attributes = TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATE, OrderState.AWAITING_PAYMENT.value),
                    SearchAttributePair(ORDER_ID, order_id),
                ]
            )
            order = await client.start_workflow(
                "BenchOrderNoop",
                order_id,
                id=f"bench-order-{order_id}",
                task_queue=QUEUE,
                search_attributes=attributes,
            )
            # Only the order's end is waited for: it comes after the confirmation's signal.
            await client.start_workflow(
                "BenchNoopWithOrder", order.id, id=f"bench-pay-{order_id}", task_queue=QUEUE
            )
            await order.result()

        await asyncio.sleep(1.0)  # let the worker poll
        await burst(min(n, 50), simple("BenchFiveNoop"), limit)  # warm-up, not counted
        out: dict[str, Any] = {"workflows": n, "in_flight": IN_FLIGHT, "limit_s": limit}
        for key, label, one in (
            ("five_noop", "five no-op local activities", simple("BenchFiveNoop")),
            ("confirmation_shape", "the confirmation's shape", simple("BenchNoop")),
            ("with_order", "with an order workflow signalled", with_order),
        ):
            progress.show(f"engine ceiling: {label}")
            out[key] = await burst(n, one, limit)
            progress.advance(n / 100)
    return out
