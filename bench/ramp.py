"""Finding the knee: a step ramp of offered rates until a step's orders are not all paid
within `hold` seconds of its end; then a run at half the capacity found (latency, and CPU per
paid order by process), and one beside which eight customers check out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.cpu import Processes, back_to_idle, delta, idle_rate, per_order, until_quiet
from bench.plan import Plan
from bench.progress import Progress
from bench.stack import Stack
from bench.workload import (
    CHECKOUT_CONCURRENCY,
    Memory,
    ack_summary,
    completions,
    end_to_end,
    load,
    make_orders,
    percentiles,
)

# CPU seconds a second below which the stack counts as idle before a measurement (idle, the
# Temporal dev server alone spends about 0.03).
QUIET = 0.15


def held(summary: dict[str, Any]) -> bool:
    """A step held if nothing failed and every order was paid in time."""
    return bool(summary["errors"] == 0 and summary["late"] == 0 and summary["incomplete"] == 0)


async def run_step(
    stack: Stack,
    engine: AsyncEngine,
    rate: float,
    plan: Plan,
    progress: Progress,
    memory: Memory,
) -> dict[str, Any]:
    items = await make_orders(stack, max(1, round(rate * plan.step_seconds)))
    progress.show(f"ramp: {rate:g}/s")
    results = await asyncio.to_thread(
        load, stack.api_url, rate, items, stack.root, progress, plan.step_seconds, memory
    )
    # The generator scheduled the last order at first + (n - 1) / rate: the step ends then.
    end = min(r[0] for r in results) + (len(items) - 1) / rate
    intents = [i[0] for i in items]
    done = await completions(engine, intents, 0, memory, until_epoch=end + plan.hold)
    summary = ack_summary(results, rate) | end_to_end(results, items, done)
    summary["late"] = sum(1 for at in done.values() if at > end + plan.hold)
    summary["held"] = held(summary)
    return summary


async def ramp(
    stack: Stack, engine: AsyncEngine, plan: Plan, progress: Progress, memory: Memory
) -> dict[str, Any]:
    """Steps up until one does not hold; capacity is the last step that did (None if the
    first did not)."""
    steps: list[dict[str, Any]] = []
    capacity = None
    for rate in plan.steps:
        step = await run_step(stack, engine, rate, plan, progress, memory)
        steps.append(step)
        if not step["held"]:
            break
        capacity = rate
    return {"steps": steps, "capacity": capacity, "hold_s": plan.hold}


def half(capacity: float | None, plan: Plan) -> float:
    """Half the capacity; below the first step if even that did not hold."""
    return (capacity if capacity is not None else plan.steps[0] / 2) / 2


async def half_capacity(
    stack: Stack,
    engine: AsyncEngine,
    rate: float,
    plan: Plan,
    progress: Progress,
    memory: Memory,
) -> dict[str, Any]:
    """Latency at half capacity, and what every paid order cost, from its checkout to its
    ticket and the order's own workflow ending (mail is off): CPU by process over the whole
    window, the stack's idle CPU over the same time taken off."""
    procs = Processes(stack.pgdata)
    progress.show("waiting for the stack to be idle")
    await until_quiet(procs, QUIET, 60)  # a step past the knee may have left work behind
    idle = await idle_rate(procs, 3.0)
    progress.show(f"half capacity: checkout ({rate:g}/s)")
    before, started = procs.seconds(), time.monotonic()
    checkout: list[float] = []
    items = await make_orders(stack, max(1, round(rate * plan.half_seconds)), timings=checkout)
    progress.show(f"half capacity: {rate:g}/s")
    results = await asyncio.to_thread(
        load, stack.api_url, rate, items, stack.root, progress, plan.half_seconds, memory
    )
    done = await completions(engine, [i[0] for i in items], plan.drain, memory)
    await until_quiet(procs, back_to_idle(idle), 20)
    spent, wall = delta(procs.seconds(), before), time.monotonic() - started
    cpu = per_order(spent, idle, wall, len(done))
    summary = ack_summary(results, rate) | end_to_end(results, items, done)
    return summary | {
        "cpu_ms_per_paid_order": cpu,
        "cpu_ms_per_paid_order_total": round(sum(cpu.values()), 1),
        "cpu_window_s": round(wall, 1),
        "idle_cpu_ms_per_s": {k: round(v * 1000, 1) for k, v in idle.items()},
        # Nothing else ran while these orders were made: eight customers at once, alone.
        "checkout_alone_ms": percentiles([ms / 1000 for ms in checkout]),
        "checkout_alone_orders": len(checkout),
    }


async def beside(
    stack: Stack,
    engine: AsyncEngine,
    rate: float,
    plan: Plan,
    progress: Progress,
    memory: Memory,
) -> dict[str, Any]:
    """Eight customers checking out, one order after another, while confirmations run at
    `rate` (a drop mixes both). Their orders stay unpaid (the window outlasts the run)."""
    items = await make_orders(stack, max(1, round(rate * plan.beside_seconds)))
    progress.show(f"checkout beside confirmations at {rate:g}/s")
    stop = asyncio.Event()
    timings: list[float] = []
    customers = asyncio.create_task(make_orders(stack, 10**6, timings=timings, until=stop))
    try:
        results = await asyncio.to_thread(
            load, stack.api_url, rate, items, stack.root, progress, plan.beside_seconds, memory
        )
    finally:
        stop.set()
        await customers
    done = await completions(engine, [i[0] for i in items], plan.drain, memory)
    summary = ack_summary(results, rate) | end_to_end(results, items, done)
    return summary | {
        "checkout_ms": percentiles([ms / 1000 for ms in timings]),
        "checkout_orders": len(timings),
        "concurrency": CHECKOUT_CONCURRENCY,
    }
