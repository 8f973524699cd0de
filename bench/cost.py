"""`python -m bench.cost [--rate R] [--seconds S] [--label L]`: CPU time per confirmation, per
process, at an offered rate below capacity.

Latency near saturation depends on how the scheduler shares two cores between five processes,
and moves by several times between runs of the same code. CPU seconds per confirmation do not:
they say what a change costs, and their sum says where the stack saturates on this machine
(cores / total). Appends one JSON line to bench/results/cost.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.progress import Progress
from bench.report import RESULTS
from bench.stack import Stack, dev_stack
from bench.workload import completions, load, make_orders
from db.session import make_engine

ROLES = {"paysaga.cli worker": "worker", "paysaga.cli api": "api"}


def processes(stack: Stack) -> dict[str, list[psutil.Process]]:
    """The stack's processes by role: worker, api, temporal (dev server), postgres (all)."""
    found: dict[str, list[psutil.Process]] = {"worker": [], "api": [], "temporal": []}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd, name = " ".join(proc.cmdline()), proc.name()
        except psutil.Error:
            continue
        role = next((r for key, r in ROLES.items() if key in cmd), None)
        if role is None and name.startswith("temporal"):
            role = "temporal"
        if role is not None:
            found[role].append(proc)
    found["postgres"] = [p for p in psutil.process_iter(["name"]) if p.name() == "postgres"]
    return found


def cpu_seconds(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    def one(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    return {role: sum(one(p) for p in ps) for role, ps in procs.items()}


async def measure(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    engine = make_engine(stack.database_url, pool_size=5)
    progress = Progress(1e9)
    try:
        # A short warm-up so imports, caches and connection pools are not charged to the run.
        warm = await make_orders(stack, 20)
        await asyncio.to_thread(load, stack.api_url, 5, warm, stack.root, progress, 1, None)
        await completions(engine, [i[0] for i in warm], 60, None)
        items = await make_orders(stack, int(rate * seconds))
        procs = processes(stack)
        before, started = cpu_seconds(procs), time.monotonic()
        results = await asyncio.to_thread(
            load, stack.api_url, rate, items, stack.root, progress, 1, None
        )
        done = await completions(engine, [i[0] for i in items], 120, None)
        after, wall = cpu_seconds(procs), time.monotonic() - started
    finally:
        await engine.dispose()
    n = max(len(done), 1)
    per = {role: round((after[role] - before[role]) * 1000 / n, 1) for role in after}
    acks = sorted(ack for _, ack, status in results if status == 200)
    total = sum(per.values())
    return {
        "rate": rate,
        "sent": len(items),
        "completed": len(done),
        "wall_s": round(wall, 1),
        "cpu_ms_per_confirmation": per,
        "cpu_ms_total": round(total, 1),
        "saturation_estimate_per_s": round((psutil.cpu_count() or 1) * 1000 / total, 1),
        "ack_ms_p50": round(acks[len(acks) // 2] * 1000, 1) if acks else None,
        "ack_ms_p99": round(acks[int(0.99 * len(acks))] * 1000, 1) if acks else None,
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
