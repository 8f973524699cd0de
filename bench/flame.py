"""`python -m bench.flame [--label L]`: py-spy flame graphs of the API and the worker under the
bench's load, kept as SVGs in bench/results/ (issue 24: cut the cost from profiles).

One stack (`bench.stack`), mail off. Two loads, each profiled on its own so each graph shows
one path: checkouts (`POST /orders`, eight customers at once, `bench.workload.make_orders`)
while py-spy samples the API, then confirmations at a steady rate (signed webhooks for those
orders) while py-spy samples the worker and the API. py-spy samples from outside the process
(no instrumentation in the code measured); threads that only wait are left out (no `--idle`).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.progress import Progress
from bench.report import RESULTS
from bench.stack import dev_stack
from bench.workload import load, make_orders


def record(pid: int, svg: Path, seconds: float, raw: bool) -> subprocess.Popen[bytes]:
    """py-spy on `pid` for `seconds`: a flame graph, or (`raw`) its collapsed stacks as text
    beside where the SVG would be, for reading by tools."""
    py_spy = Path(sys.executable).with_name("py-spy")
    output = svg.with_suffix(".txt") if raw else svg
    args = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    args += ["--rate", "100", "--format", "raw" if raw else "flamegraph"]
    args += ["--output", str(output), "--nonblocking"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flame", description=__doc__)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0, help="confirmations per second")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--raw", action="store_true", help="collapsed stacks, not SVGs")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M") + (f"-{args.label}" if args.label else "")
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="paysaga-flame-"))
    with dev_stack(root) as stack:
        asyncio.run(make_orders(stack, 20))  # warm: imports, pools, first workflow
        spy = record(stack.api.pid, args.out / f"{stamp}-flame-api-checkout.svg", 15, args.raw)
        began = time.monotonic()
        items = asyncio.run(make_orders(stack, args.orders))
        print(f"{len(items)} checkouts in {time.monotonic() - began:.1f} s")
        spy.wait()
        seconds = len(items) / args.rate
        spies = [
            record(
                stack.worker.pid, args.out / f"{stamp}-flame-worker-confirm.svg", seconds, args.raw
            ),
            record(stack.api.pid, args.out / f"{stamp}-flame-api-confirm.svg", seconds, args.raw),
        ]
        progress = Progress(1.0)
        acks = load(stack.api_url, args.rate, items, root, progress, 1.0, None)
        for spy in spies:
            spy.wait()
        print(f"{sum(1 for _, _, status in acks if status == 200)} confirmations acked")
    print(f"flame graphs: {args.out}/{stamp}-flame-*.svg")


if __name__ == "__main__":
    main()
