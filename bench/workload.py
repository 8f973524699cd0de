"""What the bench's phases do to the stack and read back: orders made (through the API, or
directly for the plain handler), the load generator run, completions awaited, memory sampled,
and the latency summaries of each run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import make_token
from bench.progress import Progress
from bench.stack import SECRET, Stack
from db.orders import NewOrder, create_order, create_product
from db.session import make_sessionmaker


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
    until: asyncio.Event | None = None,
) -> list[list[Any]]:
    """Orders through `POST /orders`, as a shop makes them: stock reserved and each order's
    lifecycle workflow started. Eight customers at a time; each checkout's latency is kept.
    `until`: the customers stop when it is set (or after n orders)."""
    secret = stack.env["PAYSAGA_JWT_SECRET"]
    admin = {"Authorization": f"Bearer {make_token(secret, 'bench-admin', admin=True)}"}
    sku = f"BENCH-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Bench seat", "unit_amount": 4900, "currency": "EUR", "stock": n}
    items: list[list[Any]] = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        (await http.post("/admin/products", json=product, headers=admin)).raise_for_status()
        order = {"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"}
        left = iter(range(n))

        # Each its own customer, as in a drop: one customer's checkouts queue on that
        # customer's hold lock (`db.holds`), eight customers' do not.
        async def customer(c: int) -> None:
            user = {"Authorization": f"Bearer {make_token(secret, f'bench-{c}')}"}
            for _ in left:
                if until is not None and until.is_set():
                    return
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

        await asyncio.gather(*(customer(c) for c in range(concurrency)))
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
    engine: AsyncEngine,
    intents: list[str],
    drain: float,
    memory: Memory | None,
    until_epoch: float | None = None,
) -> dict[str, float]:
    """intent -> epoch when the order was paid and its ticket issued (the later of the two).
    Waits at most `drain` seconds, or until the wall clock reads `until_epoch`."""
    deadline = time.monotonic() + (drain if until_epoch is None else until_epoch - time.time())
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
        "webhooks": len(results),
        "errors": len(results) - len(ok),
        "achieved_rate": round(len(ok) / max(last_ack - first, 1e-9), 1),
        "ack_ms": percentiles([r[1] for r in ok]),
    }


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
