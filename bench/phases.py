"""The bench's phases and their order: the engine's ceilings, checkout alone, the step ramp
to the knee, half capacity (latency and CPU per paid order), checkout beside confirmations;
in the full plan also the plain transactional handler and ack latency and memory with parked
workflows. `run_all` runs them in order on one stack."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import ExitStack
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from bench.ceilings import engine_ceilings
from bench.plan import Plan
from bench.progress import Progress
from bench.ramp import beside, half, half_capacity, ramp
from bench.stack import Stack
from bench.workload import (
    Memory,
    ack_summary,
    completions,
    load,
    make_orders,
    make_orders_direct,
    percentiles,
    unmatched,
)
from db.session import make_engine
from paysaga.devstack import free_port, spawn, wait_http


async def plain_phase(
    stack: Stack, engine: AsyncEngine, plan: Plan, rates: list[float], progress: Progress
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
        for rate in rates:
            items = await make_orders_direct(engine, int(rate * plan.plain_duration))
            progress.show(f"plain handler at {rate:g}/s")
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


async def checkout_one_at_a_time(stack: Stack, n: int) -> dict[str, Any]:
    """One customer at a time, nothing else running; also how many workflows a checkout
    starts (one per order while the order has its own lifecycle workflow)."""
    client = await Client.connect(stack.temporal_address)
    before = (await client.count_workflows()).count
    timings: list[float] = []
    await make_orders(stack, n, concurrency=1, timings=timings)
    await asyncio.sleep(1.0)  # visibility is written after the start returns
    after = (await client.count_workflows()).count
    return {
        "orders": n,
        "ms": percentiles([ms / 1000 for ms in timings]),
        "workflows_per_checkout": round((after - before) / n, 2),
    }


async def run_all(stack: Stack, plan: Plan, progress: Progress) -> dict[str, Any]:
    engine = make_engine(stack.database_url, pool_size=5)
    memory = Memory(stack)
    seconds: dict[str, float] = {}  # each phase's wall time, for the time budget
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase], clock = round(time.monotonic() - clock, 1), time.monotonic()

    try:
        # The references first, on a quiet machine; then paysaga from low to high load.
        n, limit = plan.ceiling_workflows, plan.ceiling_seconds
        ceilings = await engine_ceilings(stack, n, limit, progress)
        lap("engine_ceilings")
        progress.show("checkout, one customer at a time")
        one_at_a_time = await checkout_one_at_a_time(stack, plan.alone_orders)
        lap("checkout_one_at_a_time")
        knee = await ramp(stack, engine, plan, progress, memory)
        progress.show("waiting for the backlog to drain")
        knee["backlog_left"] = await settle(stack, plan.drain * 4)
        lap("ramp")
        rate = half(knee["capacity"], plan)
        at_half = await half_capacity(stack, engine, rate, plan, progress, memory)
        lap("half_capacity")
        mixed = await beside(stack, engine, rate, plan, progress, memory)
        lap("beside")
        plain = await plain_phase(stack, engine, plan, [rate], progress) if plan.plain else None
        parked = await parked_phase(stack, engine, plan, progress, memory) if plan.parked else None
        lap("plain_and_parked")
    finally:
        await engine.dispose()
    return {
        "engine_ceilings": ceilings,
        "ramp": knee,
        "half_capacity": at_half,
        "beside": mixed,
        "checkout_one_at_a_time": one_at_a_time,
        "plain": plain,
        "parked": parked,
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in memory.peak.items()},
        "phase_seconds": seconds,
    }
