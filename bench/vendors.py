"""`paysaga bench --vendors N --rate R --seconds S`: webhook -> `new_order` latency on the
vendors' live stream (SEQ-BP-002: p99 < 2 s), with N vendor connections open.

The dev stack as the bench starts it (`bench.stack`). N vendors, each with a product that
needs acceptance and one stream connection (`GET /vendor/stream`) from this process. Orders
are placed first (`POST /orders`, spread over the vendors), then paid by signed Razorpay
webhooks sent open loop at R per second for S seconds (each at its scheduled time, whether
or not earlier ones were answered). Latency runs from a webhook's scheduled send to its
`new_order` arriving on the vendor's connection. The API's and worker's CPU are measured
with the connections idle, then during the run. `--wake poll` runs the stream's follower
polling instead of woken by NOTIFY, for the comparison.

Writes bench/results/<stamp>-vendors<N>-<wake>.json and .md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect

from api.auth import make_token
from bench.loadgen import post, razorpay_body
from bench.progress import Progress
from bench.stack import SECRET, Stack, dev_stack
from bench.workload import percentiles
from db.session import make_engine

IDLE_SECONDS = 10.0  # the connections open, nothing happening: what following costs idle
ARRIVAL_WAIT = 30.0  # after the last webhook, at most this long for the last new_order
CUSTOMERS = 8  # checkouts at once while the orders are placed


@dataclass
class Run:
    stack: Stack
    vendors: int
    rate: float
    seconds: float
    progress: Progress
    orders: dict[str, tuple[str, str, int, str]] = field(default_factory=dict)  # id -> payment
    sent: dict[str, float] = field(default_factory=dict)  # order id -> scheduled send (epoch)
    arrived: dict[str, float] = field(default_factory=dict)  # order id -> new_order (epoch)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def secret(self) -> str:
        return self.stack.env["PAYSAGA_JWT_SECRET"]

    async def setup(self, http: httpx.AsyncClient) -> list[str]:
        """A product per vendor; the orders to pay, spread over the vendors."""
        admin = {"Authorization": f"Bearer {make_token(self.secret, 'bench', admin=True)}"}
        skus = []
        n = round(self.rate * self.seconds)
        for v in range(self.vendors):
            sku = f"VENDOR-{v}-{uuid.uuid4().hex[:6]}"
            product = {
                "sku": sku,
                "name": f"Vendor {v} hamper",
                "unit_amount": 2500,
                "currency": "EUR",
                "stock": n,
                "vendor": f"vendor-{v}",
                "requires_acceptance": True,
            }
            (await http.post("/admin/products", json=product, headers=admin)).raise_for_status()
            skus.append(sku)
        left = iter(range(n))

        async def customer(c: int) -> None:
            user = {"Authorization": f"Bearer {make_token(self.secret, f'buyer-{c}')}"}
            for i in left:
                order = {
                    "items": [{"sku": skus[i % len(skus)], "quantity": 1}],
                    "provider": "razorpay",
                }
                response = await http.post("/orders", json=order, headers=user)
                response.raise_for_status()
                body = response.json()
                tx = f"pay_{uuid.uuid4().hex[:14]}"
                self.orders[body["id"]] = (
                    body["payment"]["intent_id"],
                    tx,
                    body["amount"],
                    body["currency"],
                )
                self.progress.show(f"placing orders: {len(self.orders)} of {n}")

        await asyncio.gather(*(customer(c) for c in range(CUSTOMERS)))
        return skus

    async def listen(self, ws: ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] != "new_order":
                continue
            order_id = message["order"]["id"]
            if order_id in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[order_id] = time.time()

    async def pay_all(self) -> None:
        url = urlsplit(self.stack.api_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        path = url.path.rstrip("/") + "/webhooks/razorpay"
        start = time.time() + 0.2
        tasks = []
        for i, (order_id, payment) in enumerate(self.orders.items()):
            scheduled = start + i / self.rate
            await asyncio.sleep(max(0.0, scheduled - time.time()))
            tasks.append(
                asyncio.create_task(self.pay(host, port, path, order_id, payment, scheduled))
            )
            self.progress.show(f"paying: {i + 1} of {len(self.orders)} webhooks sent")
        await asyncio.gather(*tasks)

    async def pay(
        self,
        host: str,
        port: int,
        path: str,
        order_id: str,
        payment: tuple[str, str, int, str],
        scheduled: float,
    ) -> None:
        body = razorpay_body(*payment)
        headers = {
            "content-type": "application/json",
            "x-razorpay-signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            "x-razorpay-event-id": f"evt_{payment[1]}",
        }
        self.sent[order_id] = scheduled
        try:
            status = await asyncio.wait_for(post(host, port, path, body, headers), 60)
        except (OSError, TimeoutError) as exc:
            self.errors.append(f"webhook {type(exc).__name__}")
            return
        if status != 200:
            self.errors.append(f"webhook {status}")


def postgres(stack: Stack) -> list[psutil.Process]:
    """The stack's PostgreSQL server and its backends (polling costs it queries too)."""
    for proc in psutil.process_iter(["cmdline"]):
        if str(stack.pgdata) in " ".join(proc.info["cmdline"] or []):
            return [proc, *proc.children()]
    return []


def cpu_seconds(stack: Stack) -> dict[str, float]:
    seconds = {}
    for name, proc in (("api", stack.api), ("worker", stack.worker)):
        times = psutil.Process(proc.pid).cpu_times()
        seconds[name] = times.user + times.system
    seconds["postgres"] = 0.0
    for server in postgres(stack):
        try:
            used = server.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds["postgres"] += used.user + used.system
    return seconds


def cpu_share(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU used per process over `seconds`, as a percentage of one core."""
    return {k: round(100 * (after[k] - before[k]) / seconds, 1) for k in before}


async def measure(run: Run) -> dict[str, Any]:
    stack = run.stack
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http:
        await run.setup(http)
    run.progress.advance(1)
    ws_url = stack.api_url.replace("http://", "ws://") + "/vendor/stream"
    connections = []
    for v in range(run.vendors):
        token = make_token(run.secret, f"vendor-{v}", vendor=True)
        connections.append(
            await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        )
        run.progress.show(f"{v + 1} of {run.vendors} vendors connected")
    readers = [asyncio.create_task(run.listen(ws)) for ws in connections]
    try:
        run.progress.show(f"{run.vendors} connections open, idle for {IDLE_SECONDS:g} s")
        before = cpu_seconds(stack)
        await asyncio.sleep(IDLE_SECONDS)
        idle = cpu_share(before, cpu_seconds(stack), IDLE_SECONDS)
        run.progress.advance(1)
        before, began = cpu_seconds(stack), time.monotonic()
        await run.pay_all()
        deadline = time.monotonic() + ARRIVAL_WAIT
        while len(run.arrived) < len(run.sent) and time.monotonic() < deadline:
            run.progress.show(f"new_order received: {len(run.arrived)} of {len(run.sent)}")
            await asyncio.sleep(0.2)
        busy = cpu_share(before, cpu_seconds(stack), time.monotonic() - began)
        run.progress.advance(1)
    finally:
        for reader in readers:
            reader.cancel()
        for ws in connections:
            await ws.close()
    latencies = [run.arrived[o] - t for o, t in run.sent.items() if o in run.arrived]
    placed = await placed_at(stack, list(run.arrived))
    return {
        "vendors": run.vendors,
        "rate": run.rate,
        "seconds": run.seconds,
        "wake": stack.env.get("PAYSAGA_VENDOR_STREAM_WAKE", "notify"),
        "webhooks": len(run.sent),
        "received": len(latencies),
        "missing": sorted(set(run.sent) - set(run.arrived))[:20],
        "duplicates": run.duplicates,
        "errors": run.errors[:20],
        "latency_ms": percentiles(latencies),
        # The two halves: the saga (webhook -> OrderPlaced written), the stream (-> received).
        "to_placed_ms": percentiles([placed[o] - run.sent[o] for o in placed]),
        "stream_ms": percentiles([run.arrived[o] - placed[o] for o in placed]),
        "cpu_idle_pct": idle,
        "cpu_run_pct": busy,
    }


async def placed_at(stack: Stack, order_ids: list[str]) -> dict[str, float]:
    """When each order's `OrderPlaced` was written (its transaction's start: the bench's
    clock and PostgreSQL's are this machine's)."""
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT order_id, extract(epoch FROM created_at) FROM events "
                    "WHERE type = 'OrderPlaced' AND order_id = ANY(:ids)"
                ),
                {"ids": [uuid.UUID(o) for o in order_ids]},
            )
            return {str(order_id): float(at) for order_id, at in rows}
    finally:
        await engine.dispose()


def markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    lat, saga, feed = r["latency_ms"], r["to_placed_ms"], r["stream_ms"]
    return "\n".join(
        [
            f"# paysaga vendor stream, {report['started']} ({r['vendors']} vendors, {r['wake']})",
            "",
            f"Machine: {report['machine']}. The dev stack (one worker, one API process). {r['vendors']} vendor "
            f"connections open on `GET /vendor/stream`; {r['webhooks']} orders of theirs paid by signed webhooks "
            f"sent open loop at {r['rate']:g}/s for {r['seconds']:g} s. The follower wakes by **{r['wake']}**.",
            "",
            "| webhook -> new_order, ms | p50 | p95 | p99 | max |",
            "|---|---|---|---|---|",
            f"| {r['received']} of {r['webhooks']} received | {lat['p50']} | {lat['p95']} | **{lat['p99']}** | {lat['max']} |",
            f"| of which webhook -> OrderPlaced written | {saga['p50']} | {saga['p95']} | {saga['p99']} | {saga['max']} |",
            f"| of which OrderPlaced written -> new_order | {feed['p50']} | {feed['p95']} | {feed['p99']} | {feed['max']} |",
            "",
            f"- Missing: {len(r['missing'])}; duplicates: {r['duplicates']}; errors: {len(r['errors'])} {r['errors'][:3]}",
            f"- CPU, % of one core: idle with the connections open {r['cpu_idle_pct']}; during the run {r['cpu_run_pct']}",
            "",
            "SEQ-BP-002's target: webhook -> new_order p99 < 2 s.",
            "",
        ]
    )


def main(vendors: int, rate: float, seconds: float, wake: str, out: Path) -> None:
    started = datetime.now(UTC)
    progress = Progress(3)  # setup, idle, the run
    root = Path(tempfile.mkdtemp(prefix="paysaga-vendors-"))
    try:
        with dev_stack(root, extra={"PAYSAGA_VENDOR_STREAM_WAKE": wake}) as stack:
            results = asyncio.run(measure(Run(stack, vendors, rate, seconds, progress)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stderr.write("\n")
    report = {
        "started": started.isoformat(timespec="seconds"),
        "mode": f"vendors {vendors} {wake}",
        "seconds": round(time.monotonic() - progress.started, 1),
        "machine": f"{psutil.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30, 1)} GiB",
        "results": results,
    }
    stamp = started.strftime("%Y-%m-%dT%H%M") + f"-vendors{vendors}-{wake}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"{stamp}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / stamp}.json, .md ({report['seconds']} s)")
