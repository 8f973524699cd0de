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
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.auth import make_token
from db.migrate import upgrade
from db.orders import NewOrder, create_order, create_product
from db.session import make_engine, make_sessionmaker
from paysaga.devstack import free_port, spawn, temporal_dev_args, wait_for_port, wait_http
from paysaga.postgres import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-razorpay-webhook-secret"
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


# -- progress ----------------------------------------------------------------------------


class Progress:
    def __init__(self, total: float) -> None:
        self.total = total
        self.done = 0.0
        self.phase = ""
        self.started = time.monotonic()

    def show(self, phase: str | None = None, extra: float = 0.0) -> None:
        if phase is not None:
            self.phase = phase
        share = min(1.0, (self.done + extra) / self.total)
        bar = "#" * int(share * 30)
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\r[{bar:<30}] {share:4.0%} {elapsed:5.0f}s  {self.phase:<48}"[:110])
        sys.stderr.flush()

    def advance(self, amount: float) -> None:
        self.done += amount
        self.show()


# -- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    database_url: str
    temporal_address: str
    api_url: str
    worker: subprocess.Popen[bytes]
    api: subprocess.Popen[bytes]


@contextmanager
def dev_stack(root: Path) -> Iterator[Stack]:
    with ExitStack() as stack:
        pg = EmbeddedPostgres(root / "pg")
        pg.start()
        stack.callback(pg.stop)
        asyncio.run(pg.create_database("paysaga"))
        url = pg.url("paysaga")
        upgrade(url)
        port = free_port()
        args = temporal_dev_args(root / "temporal.db", port, log_level="error")
        temporal = spawn(stack, args, dict(os.environ), root / "temporal.log")
        wait_for_port("127.0.0.1", port, 60, temporal)
        api_port = free_port()
        env = dict(os.environ) | {
            "PAYSAGA_DATABASE_URL": url,
            "PAYSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "PAYSAGA_API_PORT": str(api_port),
            "PAYSAGA_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
            "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRET,
            # Longer than the whole run: no bench order expires while it waits its turn.
            "PAYSAGA_PAYMENT_WINDOW_SECONDS": "7200",
        }
        cli = [sys.executable, "-m", "paysaga.cli"]
        worker = spawn(stack, [*cli, "worker"], env, root / "worker.log")
        api = spawn(stack, [*cli, "api"], env, root / "api.log")
        api_url = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api_url}/readyz", children={"worker": worker, "api": api})
        yield Stack(root, env, url, f"127.0.0.1:{port}", f"{api_url}/api/v1", worker, api)


# -- orders, load, outcomes ---------------------------------------------------------------


async def make_orders_direct(engine: AsyncEngine, n: int) -> list[list[Any]]:
    """Orders for the plain-handler reference, written by `create_order` in one transaction
    (that handler has no workflows, so its orders carry none)."""
    sessions = make_sessionmaker(engine)
    sku = f"BENCH-{uuid.uuid4().hex[:8]}"
    intents = [f"order_{uuid.uuid4().hex[:14]}" for _ in range(n)]
    async with sessions.begin() as s:
        await create_product(
            s,
            {"sku": sku, "name": "Bench seat", "unit_amount": 4900, "currency": "EUR", "stock": n},
        )
        for intent in intents:
            await create_order(s, NewOrder("bench", {sku: 1}, "razorpay", intent, None, None))
    return [[intent, f"pay_{uuid.uuid4().hex[:14]}", 4900, "EUR"] for intent in intents]


CHECKOUT_CONCURRENCY = 8
CHECKOUT_MS: list[float] = []  # every checkout of the run, for the report


async def make_orders(
    stack: Stack,
    n: int,
    concurrency: int = CHECKOUT_CONCURRENCY,
    timings: list[float] | None = None,
) -> list[list[Any]]:
    """Orders through `POST /orders`, as a shop makes them: stock reserved and each order's
    lifecycle workflow started. Eight customers at a time; each checkout's latency is kept."""
    secret = stack.env["PAYSAGA_JWT_SECRET"]
    admin = {"Authorization": f"Bearer {make_token(secret, 'bench-admin', admin=True)}"}
    user = {"Authorization": f"Bearer {make_token(secret, 'bench')}"}
    sku = f"BENCH-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Bench seat", "unit_amount": 4900, "currency": "EUR", "stock": n}
    items: list[list[Any]] = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        (await http.post("/admin/products", json=product, headers=admin)).raise_for_status()
        order = {"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"}
        left = iter(range(n))

        async def customer() -> None:
            for _ in left:
                started = time.perf_counter()
                response = await http.post("/orders", json=order, headers=user)
                (CHECKOUT_MS if timings is None else timings).append(
                    (time.perf_counter() - started) * 1000
                )
                response.raise_for_status()
                body = response.json()
                intent = body["payment"]["intent_id"]
                items.append(
                    [intent, f"pay_{uuid.uuid4().hex[:14]}", body["amount"], body["currency"]]
                )

        await asyncio.gather(*(customer() for _ in range(concurrency)))
    return items


def unmatched(n: int) -> list[list[Any]]:
    return [
        [f"order_nobody{uuid.uuid4().hex[:8]}", f"pay_{uuid.uuid4().hex[:14]}", 4900, "EUR"]
        for _ in range(n)
    ]


class Memory:
    """Peak RSS of the worker and the API, sampled while load runs."""

    def __init__(self, stack: Stack) -> None:
        self.procs = {
            "worker": psutil.Process(stack.worker.pid),
            "api": psutil.Process(stack.api.pid),
        }
        self.peak = {name: 0 for name in self.procs}

    def sample(self) -> dict[str, int]:
        now = {name: p.memory_info().rss for name, p in self.procs.items()}
        for name, rss in now.items():
            self.peak[name] = max(self.peak[name], rss)
        return now


def load(
    url: str,
    rate: float,
    items: list[list[Any]],
    root: Path,
    progress: Progress,
    weight: float,
    memory: Memory | None,
) -> list[tuple[float, float, int]]:
    """Runs the load generator process; returns (scheduled_epoch, ack_seconds, status)."""
    job = root / f"job-{uuid.uuid4().hex[:6]}.json"
    out = job.with_suffix(".out")
    job.write_text(json.dumps({"url": url, "secret": SECRET, "rate": rate, "items": items}))
    expected = len(items) / rate
    proc = subprocess.Popen([sys.executable, "-m", "bench.loadgen", str(job), str(out)])
    started = time.monotonic()
    while proc.poll() is None:
        if memory is not None:
            memory.sample()
        progress.show(extra=weight * min(1.0, (time.monotonic() - started) / max(expected, 0.1)))
        time.sleep(0.5)
    progress.advance(weight)
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed ({proc.returncode})")
    rows = (json.loads(line) for line in out.read_text().splitlines())
    return [(float(a), float(b), int(c)) for a, b, c in rows]


async def completions(
    engine: AsyncEngine, intents: list[str], drain: float, memory: Memory | None
) -> dict[str, float]:
    """intent -> epoch when the order was paid and its ticket issued (the later of the two)."""
    deadline = time.monotonic() + drain
    query = text(
        "SELECT p.intent_id, extract(epoch FROM greatest(o.paid_at, t.issued_at)) "
        "FROM payments p JOIN orders o ON o.id = p.order_id JOIN tickets t ON t.order_id = o.id "
        "WHERE p.intent_id = ANY(:intents) AND o.status = 'paid'"
    )
    while True:
        async with engine.connect() as conn:
            done = {i: float(e) for i, e in await conn.execute(query, {"intents": intents})}
        if memory is not None:
            memory.sample()
        if len(done) == len(intents) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.5)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 1)}


def ack_summary(results: list[tuple[float, float, int]], rate: float) -> dict[str, Any]:
    ok = [r for r in results if r[2] == 200]
    first = min(r[0] for r in results)
    last_ack = max(r[0] + r[1] for r in results)
    return {
        "offered_rate": rate,
        "sent": len(results),
        "errors": len(results) - len(ok),
        "achieved_rate": round(len(ok) / max(last_ack - first, 1e-9), 1),
        "ack_ms": percentiles([r[1] for r in ok]),
    }


# -- phases -------------------------------------------------------------------------------


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


def end_to_end(
    results: list[tuple[float, float, int]], items: list[list[Any]], done: dict[str, float]
) -> dict[str, Any]:
    # The generator schedules item i at first + i / rate, and reports scheduled epochs; sorted
    # scheduled epochs line up with item order.
    scheduled = sorted(r[0] for r in results)
    latencies = [
        done[item[0]] - at for item, at in zip(items, scheduled, strict=True) if item[0] in done
    ]
    first = scheduled[0]
    return {
        "completed": len(done),
        "incomplete": len(items) - len(done),
        "completion_rate": round(
            len(done) / max(max(done.values(), default=first) - first, 1e-9), 1
        ),
        "e2e_ms": percentiles(latencies),
    }


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


# -- report -------------------------------------------------------------------------------


def derive(r: dict[str, Any]) -> dict[str, Any]:
    sustained = [
        s["offered_rate"]
        for s in r["sweep"]
        if s["incomplete"] == 0
        and s["errors"] == 0
        and s["e2e_ms"]["p99"] is not None
        and s["e2e_ms"]["p99"] < 2000
    ]
    at = {s["offered_rate"]: s for s in r["sweep"]}
    plain_at = {s["offered_rate"]: s for s in r["plain"]["rates"]}
    ratios = {}
    for rate in RATES:
        ours, theirs = at[rate]["ack_ms"]["p99"], plain_at[rate]["ack_ms"]["p99"]
        if ours is not None and theirs:
            ratios[str(rate)] = round(ours / theirs, 2)
    with_p99 = r["parked"]["ack_with"]["ack_ms"]["p99"]
    without_p99 = r["parked"]["ack_without"]["ack_ms"]["p99"]
    return {
        "sustained_rate_p99_e2e_under_2s": max(sustained, default=None),
        "throughput_vs_engine_ceiling": round(
            r["saturation"]["throughput"] / r["engine_ceiling"]["throughput"], 3
        ),
        "overload_throughput_vs_engine_ceiling": round(
            r["saturation"]["overload_throughput"] / r["engine_ceiling"]["throughput"], 3
        ),
        "throughput_vs_plain_handler": round(
            r["saturation"]["throughput"] / r["plain"]["throughput"], 3
        ),
        "ack_p99_multiple_of_plain": ratios,
        "ack_p99_parked_vs_not": round(with_p99 / without_p99, 2)
        if with_p99 and without_p99
        else None,
    }


def markdown(report: dict[str, Any]) -> str:
    r, d = report["results"], report["derived"]
    lines = [
        f"# paysaga benchmark, {report['started']} ({report['mode']})",
        "",
        f"Machine: {report['machine']}. One worker, one API process (uvicorn), embedded PostgreSQL, "
        "Temporal dev server on a file; load generator in its own process, open loop.",
        "",
        "## Ack and end-to-end latency (ms) against offered load",
        "",
        "| offered/s | achieved ack/s | ack p50 | p95 | p99 | max | e2e p50 | p95 | p99 | max | completed/s | incomplete | errors | plain ack p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain_at = {s["offered_rate"]: s for s in r["plain"]["rates"]}
    for s in r["sweep"]:
        a, e = s["ack_ms"], s["e2e_ms"]
        lines.append(
            f"| {s['offered_rate']:g} | {s['achieved_rate']} | {a['p50']} | {a['p95']} | {a['p99']} | {a['max']} "
            f"| {e['p50']} | {e['p95']} | {e['p99']} | {e['max']} | {s['completion_rate']} | {s['incomplete']} "
            f"| {s['errors']} | {plain_at[s['offered_rate']]['ack_ms']['p99']} |"
        )
    p = r["parked"]
    lines += [
        "",
        "## Throughput and the reference points",
        "",
        "| | confirmations/s |",
        "|---|---|",
        f"| paysaga sustained (best sweep phase with nothing left incomplete: {r['saturation']['offered_rate']:g}/s offered; webhook to paid + ticket) | {r['saturation']['throughput']} |",
        f"| paysaga under overload ({r['saturation']['overload_offered_rate']:g}/s offered) | {r['saturation']['overload_throughput']} |",
        f"| engine ceiling (same activities, no-ops, no database) | {r['engine_ceiling']['throughput']} |",
        f"| plain transactional handler (one request, one transaction) | {r['plain']['throughput']} |",
        "",
        f"- Highest offered rate with p99 end-to-end under 2 s, nothing lost: **{d['sustained_rate_p99_e2e_under_2s']}/s**",
        f"- paysaga sustained throughput as a fraction of the engine ceiling: **{d['throughput_vs_engine_ceiling']:.0%}** "
        f"(under overload: {d['overload_throughput_vs_engine_ceiling']:.0%}); of the plain handler: **{d['throughput_vs_plain_handler']:.0%}**",
        f"- paysaga ack p99 as a multiple of the plain handler's, per offered rate: {d['ack_p99_multiple_of_plain']}",
        "",
        "## Checkout",
        "",
        f"- `POST /orders` (stock reserved, order workflow started), {r['checkout']['orders']} orders, "
        f"{r['checkout']['concurrency']} customers at a time: p50 {r['checkout']['ms']['p50']} ms, "
        f"p95 **{r['checkout']['ms']['p95']} ms**, p99 {r['checkout']['ms']['p99']} ms (SEQ-BP-002: p95 < 200 ms)",
        f"- One customer at a time (50 orders, nothing else running): p50 {r['checkout']['alone_ms']['p50']} ms, "
        f"p95 **{r['checkout']['alone_ms']['p95']} ms**, p99 {r['checkout']['alone_ms']['p99']} ms",
        "",
        "## Memory",
        "",
        f"- Peak RSS during the run: worker {r['peak_rss_mb']['worker']} MB, API {r['peak_rss_mb']['api']} MB",
        f"- Worker RSS before parking: {p['worker_rss_mb_before']} MB; with {p['parked_cases']} parked unmatched workflows: **{p['worker_rss_mb_parked']} MB**",
        f"- Ack p99 at {p['ack_without']['offered_rate']:g}/s without parked workflows {p['ack_without']['ack_ms']['p99']} ms, "
        f"with them {p['ack_with']['ack_ms']['p99']} ms (ratio {d['ack_p99_parked_vs_not']})",
        "",
        "Targets (not asserted): ack p99 <= 50 ms at 100/s; e2e p99 <= 2 s at 50/s; throughput >= 60 % of the engine "
        "ceiling; worker RSS <= 300 MB with 10,000 parked, ack p99 with them within 20 %.",
        "",
        f"![latency against offered load]({report['plot']})",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    rates = [s["offered_rate"] for s in r["sweep"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label, style in (("ack_ms", "ack", "-o"), ("e2e_ms", "end to end", "--s")):
        for q in ("p50", "p95", "p99"):
            ax.plot(rates, [s[key][q] for s in r["sweep"]], style, label=f"paysaga {label} {q}")
    ax.plot(
        rates, [s["ack_ms"]["p99"] for s in r["plain"]["rates"]], ":^", label="plain handler p99"
    )
    ax.set_xlabel("offered confirmations per second")
    ax.set_ylabel("latency (ms, log)")
    ax.set_yscale("log")
    ax.set_xticks(rates)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"paysaga latency against offered load ({report['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
