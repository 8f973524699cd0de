"""`paysaga bench [--quick]` / `make bench`: ack and end-to-end latency against offered load,
memory with parked workflows, and two reference points measured in the same run.

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

from bench.phases import FULL, QUICK, run_all
from bench.progress import Progress
from bench.report import RESULTS, derive, markdown, plot
from bench.stack import dev_stack


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="paysaga bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs: under 5 minutes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "")
    total = (
        4 * plan.duration
        + 4 * plan.plain_duration
        + 2 * plan.burst / 500
        + plan.parked / 200
        + 2 * plan.probe_duration
    )
    progress = Progress(total)
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


if __name__ == "__main__":
    main()
