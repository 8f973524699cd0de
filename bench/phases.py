"""The bench's phases: paysaga at each offered rate, the two reference points (the engine
with no-op activities, a plain transactional handler), and ack latency and memory with
parked workflows. `run_all` runs them in order on one stack."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from bench.progress import Progress
from bench.stack import Stack
from bench.workload import (
    CHECKOUT_CONCURRENCY,
    CHECKOUT_MS,
    Memory,
    ack_summary,
    completions,
    end_to_end,
    load,
    make_orders,
    make_orders_direct,
    percentiles,
    unmatched,
)
from db.session import make_engine
from paysaga.devstack import free_port, spawn, wait_http

RATES = (25, 50, 100, 200)


@dataclass(frozen=True)
class Plan:
    duration: float  # seconds per offered rate, paysaga
    plain_duration: float
    burst: int  # items for the throughput runs
    parked: int
    probe_rate: int
    probe_duration: float
    drain: float  # how long to wait for stragglers after the sender stops


# The parked-workflow probe runs at 50/s, within what one worker completes, so that it shows
# the parked workflows' effect and not the growth of an overload backlog.
FULL = Plan(60, 30, 3000, 10_000, 50, 30, 60)
QUICK = Plan(5, 4, 150, 500, 50, 4, 20)


async def paysaga_rate(
    stack: Stack,
    engine: AsyncEngine,
    rate: float,
    seconds: float,
    plan: Plan,
    progress: Progress,
    memory: Memory,
) -> dict[str, Any]:
    items = await make_orders(stack, int(rate * seconds))
    progress.show(f"paysaga at {rate:g}/s")
    results = await asyncio.to_thread(
        load, stack.api_url, rate, items, stack.root, progress, seconds, memory
    )
    done = await completions(engine, [i[0] for i in items], plan.drain, memory)
    summary = ack_summary(results, rate)
    summary |= end_to_end(results, items, done)
    return summary


async def plain_phase(
    stack: Stack, engine: AsyncEngine, plan: Plan, progress: Progress
) -> dict[str, Any]:
    port = free_port()
    out: dict[str, Any] = {"rates": []}
    with ExitStack() as es:
        proc = spawn(
            es,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.plain:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stack.env,
            stack.root / "plain.log",
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/docs")
        rss = psutil.Process(proc.pid)
        for rate in RATES:
            items = await make_orders_direct(engine, int(rate * plan.plain_duration))
            progress.show(f"plain handler at {rate}/s")
            results = await asyncio.to_thread(
                load, f"{url}/api/v1", rate, items, stack.root, progress, plan.plain_duration, None
            )
            out["rates"].append(ack_summary(results, rate))
        items = await make_orders_direct(engine, plan.burst)
        progress.show("plain handler, saturation")
        results = await asyncio.to_thread(
            load, f"{url}/api/v1", 2000, items, stack.root, progress, plan.burst / 500, None
        )
        ok = [r for r in results if r[2] == 200]
        span = max(r[0] + r[1] for r in ok) - min(r[0] for r in results)
        out["throughput"] = round(len(ok) / span, 1)
        out["rss_mb"] = round(rss.memory_info().rss / 2**20, 1)
    return out


async def engine_ceiling(stack: Stack, plan: Plan, progress: Progress) -> dict[str, Any]:
    queue = "bench-noop"
    with ExitStack() as es:
        spawn(
            es,
            [sys.executable, "-m", "bench.noop", stack.temporal_address, queue],
            stack.env,
            stack.root / "noop.log",
        )
        client = await Client.connect(stack.temporal_address)
        limit = asyncio.Semaphore(200)
        progress.show("engine ceiling (no-op activities)")

        async def one(i: int) -> None:
            async with limit:
                await client.execute_workflow(
                    "BenchNoop", f"tx{i}", id=f"noop-{uuid.uuid4()}", task_queue=queue
                )

        await asyncio.sleep(1.0)  # let the worker poll
        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(plan.burst)))
        elapsed = time.monotonic() - started
        progress.advance(plan.burst / 500)
    return {"workflows": plan.burst, "throughput": round(plan.burst / elapsed, 1)}


async def settle(stack: Stack, limit: float) -> int:
    """Waits until no confirmation is running (what an overloaded phase left behind)."""
    client = await Client.connect(stack.temporal_address)
    query = 'WorkflowType = "ConfirmPayment" AND ExecutionStatus = "Running"'
    deadline = time.monotonic() + limit
    while True:
        running = (await client.count_workflows(query)).count
        if running == 0 or time.monotonic() > deadline:
            return running
        await asyncio.sleep(1)


async def parked_phase(
    stack: Stack, engine: AsyncEngine, plan: Plan, progress: Progress, memory: Memory
) -> dict[str, Any]:
    async def probe(label: str) -> dict[str, Any]:
        items = await make_orders(stack, int(plan.probe_rate * plan.probe_duration))
        progress.show(f"ack probe {label}")
        results = await asyncio.to_thread(
            load,
            stack.api_url,
            plan.probe_rate,
            items,
            stack.root,
            progress,
            plan.probe_duration,
            memory,
        )
        await completions(engine, [i[0] for i in items], plan.drain, memory)
        return ack_summary(results, plan.probe_rate)

    without = await probe("without parked workflows")
    rss_before = memory.sample()["worker"]
    progress.show(f"parking {plan.parked} unmatched confirmations")
    results = await asyncio.to_thread(
        load,
        stack.api_url,
        200,
        unmatched(plan.parked),
        stack.root,
        progress,
        plan.parked / 200,
        memory,
    )
    deadline = time.monotonic() + plan.drain * 5
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            cases = await conn.scalar(
                text("SELECT count(*) FROM reconciliation_cases WHERE kind = 'unmatched'")
            )
        if cases >= plan.parked:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(2)
    rss_parked = memory.sample()["worker"]
    with_parked = await probe("with parked workflows")
    return {
        "parked": plan.parked,
        "parked_acks_ok": sum(1 for r in results if r[2] == 200),
        "parked_cases": int(cases or 0),
        "worker_rss_mb_before": round(rss_before / 2**20, 1),
        "worker_rss_mb_parked": round(rss_parked / 2**20, 1),
        "ack_without": without,
        "ack_with": with_parked,
    }


async def run_all(stack: Stack, plan: Plan, progress: Progress) -> dict[str, Any]:
    engine = make_engine(stack.database_url, pool_size=5)
    memory = Memory(stack)
    try:
        # The references first, on a quiet machine; then paysaga from low to high load.
        ceiling = await engine_ceiling(stack, plan, progress)
        progress.show("checkout, one customer at a time")
        alone: list[float] = []
        await make_orders(stack, 50, concurrency=1, timings=alone)
        plain = await plain_phase(stack, engine, plan, progress)
        sweep = []
        for rate in RATES:
            sweep.append(
                await paysaga_rate(stack, engine, rate, plan.duration, plan, progress, memory)
            )
        # Sustained: the best completion rate of a phase that left nothing incomplete. The top
        # rate, four times what one worker completes, shows throughput under overload.
        kept_up = [s for s in sweep if s["incomplete"] == 0 and s["errors"] == 0]
        best = max(kept_up, key=lambda s: s["completion_rate"], default=sweep[0])
        top = sweep[-1]
        saturation = {
            "offered_rate": best["offered_rate"],
            "throughput": best["completion_rate"],
            "overload_offered_rate": top["offered_rate"],
            "overload_throughput": top["completion_rate"],
        }
        progress.show("waiting for the backlog to drain")
        saturation["backlog_left"] = await settle(stack, plan.drain * 4)
        parked = await parked_phase(stack, engine, plan, progress, memory)
    finally:
        await engine.dispose()
    return {
        "sweep": sweep,
        "saturation": saturation,
        "engine_ceiling": ceiling,
        "plain": plain,
        "parked": parked,
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in memory.peak.items()},
        "checkout": {
            "orders": len(CHECKOUT_MS),
            "concurrency": CHECKOUT_CONCURRENCY,
            "ms": percentiles([ms / 1000 for ms in CHECKOUT_MS]),
            "alone_ms": percentiles([ms / 1000 for ms in alone]),
        },
    }
