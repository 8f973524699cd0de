"""`paysaga bench --drop N`: a ticket drop. N customers, each their own account, arrive evenly
over a minute; each checks out (`POST /orders` with an attendee name and address) and pays a
few seconds later (a signed Razorpay webhook, as `bench.loadgen` sends them). Mail is on: the
worker sends to `bench.mailbox`, an SMTP server in this process that notes when each ticket
mail arrives.

Reports the time from the drop's start to the last ticket paid and to the last ticket mailed,
the mail lag (order paid -> its ticket mail received) p50/p95/p99, and which paid orders got
no mail within MAIL_WAIT seconds of the last payment. Writes bench/results/<stamp>-drop<N>.json
and .md.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import make_token
from bench.loadgen import post, razorpay_body
from bench.mailbox import Mailbox, mail_server
from bench.progress import Progress
from bench.stack import SECRET, Stack, dev_stack
from bench.workload import percentiles
from db.session import make_engine
from domain.statuses import OrderStatus

MINUTE = 60.0
PAY_AFTER = 3.0  # seconds between a customer's checkout and their payment
PAID_WAIT = 120.0  # after the last payment is sent, at most this long for orders to be paid
MAIL_WAIT = 120.0  # after the last order is paid, at most this long for its mail


def _elapsed(progress: Progress) -> float:
    return time.monotonic() - progress.started


class Drop:
    """One drop's customers and what happened to each."""

    def __init__(self, stack: Stack, n: int, progress: Progress, within: float = MINUTE) -> None:
        self.stack, self.n, self.progress, self.within = stack, n, progress, within
        self.secret = stack.env["PAYSAGA_JWT_SECRET"]
        self.sku = f"DROP-{uuid.uuid4().hex[:8]}"
        self.checkout_ms: list[float] = []
        self.ack_ms: list[float] = []
        self.errors: list[str] = []
        self.orders: dict[str, float] = {}  # order id -> when its payment was sent

    async def customer(self, http: httpx.AsyncClient, i: int, start: float) -> None:
        await asyncio.sleep(max(0.0, start + i * (self.within - PAY_AFTER) / self.n - time.time()))
        user = {"Authorization": f"Bearer {make_token(self.secret, f'fan-{i}')}"}
        order = {
            "items": [{"sku": self.sku, "quantity": 1}],
            "provider": "razorpay",
            "attendee": {"name": f"Fan {i}", "email": f"fan{i}@example.com"},
        }
        began = time.perf_counter()
        response = await http.post("/orders", json=order, headers=user)
        self.checkout_ms.append((time.perf_counter() - began) * 1000)
        if response.status_code != 201:
            self.errors.append(f"checkout {response.status_code}")
            return
        body = response.json()
        await asyncio.sleep(PAY_AFTER)
        await self.pay(body["id"], body["payment"]["intent_id"], body["amount"], body["currency"])

    async def pay(self, order_id: str, intent: str, amount: int, currency: str) -> None:
        body = razorpay_body(intent, f"pay_{uuid.uuid4().hex[:14]}", amount, currency)
        headers = {
            "content-type": "application/json",
            "x-razorpay-signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            "x-razorpay-event-id": f"evt_{uuid.uuid4().hex[:14]}",
        }
        url = urlsplit(self.stack.api_url)
        path = url.path.rstrip("/") + "/webhooks/razorpay"
        sent = time.time()
        began = time.perf_counter()
        try:
            status = await post(url.hostname or "127.0.0.1", url.port or 80, path, body, headers)
        except OSError as exc:
            self.errors.append(f"webhook {type(exc).__name__}")
            return
        self.ack_ms.append((time.perf_counter() - began) * 1000)
        if status != 200:
            self.errors.append(f"webhook {status}")
            return
        self.orders[order_id] = sent
        self.progress.show(
            f"drop: {len(self.orders)} of {self.n} customers have paid",
            extra=_elapsed(self.progress),
        )

    async def run(self) -> float:
        """Sets up the product, lets the customers in; the drop's start (epoch)."""
        admin = {"Authorization": f"Bearer {make_token(self.secret, 'drop-admin', admin=True)}"}
        product = {
            "sku": self.sku,
            "name": "Drop seat",
            "unit_amount": 4900,
            "currency": "EUR",
            "stock": self.n,
        }
        async with httpx.AsyncClient(base_url=self.stack.api_url, timeout=60) as http:
            (await http.post("/admin/products", json=product, headers=admin)).raise_for_status()
            start = time.time() + 0.5
            await asyncio.gather(*(self.customer(http, i, start) for i in range(self.n)))
        return start


async def paid_at(engine: AsyncEngine, order_ids: list[str]) -> dict[str, tuple[float, float]]:
    """order id -> (when it was paid, when its ticket was issued), for those paid."""
    query = text(
        "SELECT o.id, extract(epoch FROM o.paid_at), extract(epoch FROM t.issued_at) "
        "FROM orders o JOIN tickets t ON t.order_id = o.id "
        "WHERE o.id = ANY(:ids) AND o.status = :paid"
    )
    ids = [uuid.UUID(i) for i in order_ids]
    async with engine.connect() as conn:
        rows = await conn.execute(query, {"ids": ids, "paid": OrderStatus.PAID.value})
        return {str(i): (float(p), float(t)) for i, p, t in rows}


async def wait_paid(
    engine: AsyncEngine, ids: list[str], progress: Progress
) -> dict[str, tuple[float, float]]:
    """Until every order whose payment was accepted is paid, at most PAID_WAIT seconds."""
    deadline = time.monotonic() + PAID_WAIT
    while True:
        paid = await paid_at(engine, ids)
        progress.show(f"drop: {len(paid)} of {len(ids)} paid", extra=_elapsed(progress))
        if len(paid) == len(ids) or time.monotonic() > deadline:
            return paid
        await asyncio.sleep(0.5)


async def wait_mailed(box: Mailbox, paid: list[str], progress: Progress) -> None:
    """Until every paid order's ticket mail has arrived, at most MAIL_WAIT seconds: what is
    still missing then is reported, not waited for."""
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        mailed = box.tickets()
        left = [o for o in paid if o not in mailed]
        progress.show(
            f"drop: {len(paid) - len(left)} of {len(paid)} ticket mails", extra=_elapsed(progress)
        )
        if not left or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def drop(
    stack: Stack, box: Mailbox, n: int, progress: Progress, within: float
) -> dict[str, Any]:
    engine = make_engine(stack.database_url, pool_size=2)
    try:
        d = Drop(stack, n, progress, within)
        progress.show(f"drop: {n} customers within {within:g} s")
        start = await d.run()
        paid = await wait_paid(engine, list(d.orders), progress)
        await wait_mailed(box, list(paid), progress)
    finally:
        await engine.dispose()
    return figures(d, start, paid, box)


def figures(
    d: Drop, start: float, paid: dict[str, tuple[float, float]], box: Mailbox
) -> dict[str, Any]:
    mailed = box.tickets()
    lags = [mailed[o] - p for o, (p, _) in paid.items() if o in mailed]
    missing = sorted(set(paid) - set(mailed))
    last_ticket = max((t for _, t in paid.values()), default=None)
    last_mail = max((mailed[o] for o in paid if o in mailed), default=None)
    return {
        "customers": d.n,
        "within_s": d.within,
        "payments_sent": len(d.orders),
        "errors": d.errors,
        "paid_orders": len(paid),
        "unpaid": sorted(set(d.orders) - set(paid))[:20],
        "time_to_last_paid_s": round(last_ticket - start, 1) if last_ticket else None,
        "time_to_last_mailed_s": round(last_mail - start, 1) if last_mail else None,
        "mails_received": len([o for o in paid if o in mailed]),
        "mail_missing": len(missing),
        "mail_missing_orders": missing[:20],
        "mail_duplicates": box.duplicates(),
        "mail_kinds": box.kinds(),
        "mail_lag_ms": percentiles(lags),
        "pay_to_ticket_ms": percentiles([t - d.orders[o] for o, (_, t) in paid.items()]),
        "checkout_ms": percentiles([ms / 1000 for ms in d.checkout_ms]),
        "ack_ms": percentiles([ms / 1000 for ms in d.ack_ms]),
    }


def markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    lag, pay, co, ack = r["mail_lag_ms"], r["pay_to_ticket_ms"], r["checkout_ms"], r["ack_ms"]
    missing = r["mail_missing"]
    return "\n".join(
        [
            f"# paysaga ticket drop, {report['started']} ({r['customers']} customers, {report['seconds']} s)",
            "",
            f"Machine: {report['machine']}. {r['customers']} customers arrive evenly over {r.get('within_s', MINUTE):g} s; each "
            f"checks out with an attendee address and pays {PAY_AFTER:g} s later (signed webhook). Mail on: "
            "the worker sends to an SMTP server in the bench's process.",
            "",
            f"- Time to the last ticket paid: **{r['time_to_last_paid_s']} s**; to the last ticket mailed: "
            f"**{r['time_to_last_mailed_s']} s** (from the drop's start)",
            f"- Paid orders: {r['paid_orders']} of {r['payments_sent']} payments sent; errors: {len(r['errors'])} {r['errors'][:5]}",
            f"- Ticket mails received: **{r['mails_received']} of {r['paid_orders']} paid**; missing after "
            f"{MAIL_WAIT:g} s: {missing}{' ' + str(r['mail_missing_orders'][:5]) if missing else ''}; "
            f"duplicates: {r['mail_duplicates']}; all mail by kind: {r['mail_kinds']}",
            "",
            "| ms | p50 | p95 | p99 | max |",
            "|---|---|---|---|---|",
            f"| mail lag (order paid -> ticket mail received) | {lag['p50']} | {lag['p95']} | **{lag['p99']}** | {lag['max']} |",
            f"| payment sent -> paid + ticket | {pay['p50']} | {pay['p95']} | {pay['p99']} | {pay['max']} |",
            f"| checkout (`POST /orders`) | {co['p50']} | {co['p95']} | {co['p99']} | {co['max']} |",
            f"| webhook ack | {ack['p50']} | {ack['p95']} | {ack['p99']} | {ack['max']} |",
            "",
            "Issue 25's target: mail lag p99 <= 5 s with 300 paid orders at the capacity rate.",
            "",
        ]
    )


def main(n: int, out: Path, within: float = MINUTE) -> None:
    import psutil

    started = datetime.now(UTC)
    progress = Progress(within + PAID_WAIT + MAIL_WAIT)
    root = Path(tempfile.mkdtemp(prefix="paysaga-drop-"))
    try:
        with mail_server() as (box, port), dev_stack(root, smtp=("127.0.0.1", port)) as stack:
            results = asyncio.run(drop(stack, box, n, progress, within))
        stamp = started.strftime("%Y-%m-%dT%H%M") + f"-drop{n}"
        if results["mail_missing"] or results["unpaid"] or results["errors"]:
            # The stack's directory goes: what the worker said is kept to find out why.
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "worker.log", out / f"{stamp}-worker.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stderr.write("\n")
    report = {
        "started": started.isoformat(timespec="seconds"),
        "mode": f"drop {n}",
        "seconds": round(time.monotonic() - progress.started, 1),
        "machine": f"{psutil.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30, 1)} GiB",
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"{stamp}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / stamp}.json, .md ({report['seconds']} s)")
