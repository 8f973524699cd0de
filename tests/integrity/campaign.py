"""A long integrity campaign in shards: `python -m tests.integrity.campaign --shards K`.

The campaign waits far more than it computes (windows closing, workflows finishing, a
database restarting), so on two cores several shards run side by side, each a pytest
process with its own stack (PostgreSQL, Temporal dev server, worker) and its own seed
(seed, seed + 1, ...). Their reports are merged into one (`build/integrity-report.json`):
steps, checks, faults and rules summed, distinct sequences counted across shards, and every
failure with the seed that replays it (`make integrity SEED=<seed> RUNS=<the shard's examples>`:
a shard's seed with as many examples replays its examples in the same order).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

OUT = Path("build/integrity")
SUMMED = ("examples", "steps", "skips", "checks", "faults_total")
COUNTED = ("faults", "rules", "skipped", "seconds")


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"shards": len(reports), "seeds": [r["seed"] for r in reports]}
    for key in SUMMED:
        merged[key] = sum(r.get(key, 0) for r in reports)
    for key in COUNTED:
        total: Counter[str] = Counter()
        for r in reports:
            total.update(r.get(key, {}))
        merged[key] = {k: round(v, 1) for k, v in sorted(total.items())}
    sequences = {s for r in reports for s in r.get("sequences", [])}
    merged["distinct_sequences"] = len(sequences)
    merged["result"] = (
        "passed" if reports and all(r.get("result") == "passed" for r in reports) else "failed"
    )
    merged["wall_seconds"] = max((r.get("wall_seconds", 0) for r in reports), default=0)
    merged["failures"] = [f"seed {r['seed']}: {f}" for r in reports for f in r.get("failures", [])]
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="examples per shard at most")
    parser.add_argument("--steps", type=int, default=25, help="steps per example at most")
    parser.add_argument("--minutes", type=float, default=0, help="stop each shard after this")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(31)
    OUT.mkdir(parents=True, exist_ok=True)
    shards = []
    for k in range(args.shards):
        report = OUT / f"shard-{k}.json"
        report.unlink(missing_ok=True)
        env = os.environ | {
            "PAYSAGA_INTEGRITY_SEED": str(seed + k),
            "PAYSAGA_INTEGRITY_EXAMPLES": str(args.runs),
            "PAYSAGA_INTEGRITY_STEPS": str(args.steps),
            "PAYSAGA_INTEGRITY_MINUTES": str(args.minutes),
            "PAYSAGA_INTEGRITY_REPORT": str(report),
        }
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/integrity/test_integrity.py",
            "-x",
            "-q",
            "-s",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(OUT / f"tmp-{k}"),
        ]
        log = (OUT / f"shard-{k}.log").open("wb")
        shards.append((report, log, subprocess.Popen(command, env=env, stdout=log, stderr=log)))
        print(f"shard {k}: seed {seed + k}, log {OUT / f'shard-{k}.log'}", flush=True)
        time.sleep(5)  # the stacks start one after the other, not all at once
    codes = [proc.wait() for _, _, proc in shards]
    for _, log, _ in shards:
        log.close()
    reports = [json.loads(r.read_text()) for r, _, _ in shards if r.exists()]
    merged = merge(reports)
    Path("build/integrity-report.json").write_text(json.dumps(merged, indent=2) + "\n")
    brief = {k: v for k, v in merged.items() if k != "failures"}
    print(f"integrity campaign: {json.dumps(brief)}")
    for failure in merged["failures"]:
        print(f"FAILURE {failure}")
    return 0 if all(c == 0 for c in codes) and len(reports) == len(shards) else 1


if __name__ == "__main__":
    sys.exit(main())
