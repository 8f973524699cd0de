"""`paysaga bench [--quick | --drop N]` / `make bench`: the bench finds its own knee (a step
ramp), then measures at half capacity ack and end-to-end latency and CPU per paid order by
process, checkout alone and beside confirmations, and the engine's ceilings in the same run.
`--drop N`: a ticket drop instead, N customers checking out and paying within a minute with
mail on (`bench.drop`).

The stack is the dev stack's: embedded PostgreSQL, the Temporal dev server on a file, one
worker and the API under uvicorn, each its own process. Webhooks come from `bench.loadgen`,
another process, open loop. Writes bench/results/<stamp>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.phases import run_all
from bench.plan import FULL, QUICK, Plan
from bench.progress import Progress
from bench.report import RESULTS, derive, markdown, plot
from bench.stack import dev_stack


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.vendors is not None:
        from bench.vendors import main as vendors_main

        vendors_main(args.vendors, args.rate, args.seconds, args.wake, args.out)
        return
    if args.drop is not None:
        from bench.drop import main as drop_main

        drop_main(args.drop, args.out, args.drop_seconds)
        return
    plan = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "")
    progress = Progress(expected_work(plan))
    root = Path(tempfile.mkdtemp(prefix="paysaga-bench-"))
    try:
        progress.show("starting the dev stack")
        with dev_stack(root) as stack:
            results = asyncio.run(run_all(stack, plan, progress))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stderr.write("\n")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": mode,
        "seconds": round(time.monotonic() - progress.started, 1),
        "machine": f"{psutil.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30, 1)} GiB",
        "plan": plan.__dict__,
        "results": results,
        "plot": f"{stamp}.png",
    }
    report["derived"] = derive(results)
    (args.out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / f"{stamp}.png")
    (args.out / f"{stamp}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out / stamp}.json, .md, .png ({report['seconds']} s)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paysaga bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs: under 5 minutes")
    parser.add_argument(
        "--drop", type=int, metavar="N", help="a ticket drop: N customers buy within a minute"
    )
    parser.add_argument(
        "--drop-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="the drop's customers arrive over S seconds (60; N/S at the capacity rate)",
    )
    parser.add_argument(
        "--vendors",
        type=int,
        metavar="N",
        help="webhook -> new_order latency with N vendors' stream connections open (bench.vendors)",
    )
    parser.add_argument(
        "--rate", type=float, default=15.0, help="--vendors: webhooks per second (15: half of 30/s)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="--vendors: for how long")
    parser.add_argument(
        "--wake",
        choices=("notify", "poll"),
        default="notify",
        help="--vendors: the follower's wake",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def expected_work(plan: Plan) -> float:
    """The progress bar's whole, in the units the phases advance it by (about seconds): the
    ramp is guessed to stop after five steps."""
    total = 3 * plan.ceiling_workflows / 100 + 5 * plan.step_seconds
    total += plan.half_seconds + plan.beside_seconds
    if plan.plain:
        total += plan.plain_duration + plan.burst / 500
    if plan.parked:
        total += plan.parked / 200 + 2 * plan.probe_duration
    return total


if __name__ == "__main__":
    main()
