"""`python -m bench.cost [--rate R] [--seconds S] [--label L]`: CPU time per paid order, per
process, at an offered rate below capacity: everything an order causes from its checkout
(`POST /orders`, the order's workflow started) to its ticket and its workflow's end, mail off.

Latency near saturation depends on how the scheduler shares two cores between five processes,
and moves by several times between runs of the same code. CPU seconds per paid order do not:
they say what a change costs, and their sum says where the stack saturates on this machine
(cores / total). The same measurement as the full bench's half-capacity run
(`bench.ramp.half_capacity`). Appends one JSON line to bench/results/cost.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.plan import QUICK
from bench.progress import Progress
from bench.ramp import half_capacity
from bench.report import RESULTS
from bench.stack import Stack, dev_stack
from bench.workload import Memory, completions, load, make_orders
from db.session import make_engine


async def measure(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    engine = make_engine(stack.database_url, pool_size=5)
    progress = Progress(1e9)
    try:
        # A short warm-up so imports, caches and connection pools are not charged to the run.
        warm = await make_orders(stack, 20)
        await asyncio.to_thread(load, stack.api_url, 5, warm, stack.root, progress, 1, None)
        await completions(engine, [i[0] for i in warm], 60, None)
        plan = replace(QUICK, half_seconds=seconds, drain=120)
        run = await half_capacity(stack, engine, rate, plan, progress, Memory(stack))
    finally:
        await engine.dispose()
    total = run["cpu_ms_per_paid_order_total"]
    return {
        "rate": rate,
        "webhooks": run["webhooks"],
        "completed": run["completed"],
        "wall_s": run["cpu_window_s"],
        "cpu_ms_per_paid_order": run["cpu_ms_per_paid_order"],
        "cpu_ms_total": total,
        "saturation_estimate_per_s": round((psutil.cpu_count() or 1) * 1000 / total, 1)
        if total
        else None,
        "ack_ms_p50": run["ack_ms"]["p50"],
        "ack_ms_p99": run["ack_ms"]["p99"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.cost")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="paysaga-cost-"))
    with dev_stack(root) as stack:
        report = asyncio.run(measure(stack, args.rate, args.seconds))
    report = {"stamp": datetime.now(UTC).strftime("%Y-%m-%dT%H%M"), "label": args.label} | report
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "cost.jsonl").open("a") as out:
        out.write(json.dumps(report) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
