"""Open-loop load generator, run as its own process: `python -m bench.loadgen JOB OUT`.

Sends signed Razorpay `payment.captured` webhooks at a fixed offered rate. Each request has a
scheduled send time `t0 + i / rate`; it is sent then whether or not earlier ones were
answered, and its latency is measured from the scheduled time, so a slow server (or a busy
generator) shows up as latency instead of silently lowering the rate.

JOB (JSON): {"url", "secret", "rate", "items": [[intent_id, transaction_id, amount, currency]]}
OUT (JSON lines): [scheduled_epoch, ack_seconds, status] per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def razorpay_body(intent_id: str, transaction_id: str, amount: int, currency: str) -> bytes:
    payment = {
        "id": transaction_id,
        "entity": "payment",
        "amount": amount,
        "currency": currency,
        "status": "captured",
        "order_id": intent_id,
        "method": "upi",
        "captured": True,
    }
    event = {
        "entity": "event",
        "account_id": "acc_bench",
        "event": "payment.captured",
        "contains": ["payment"],
        "payload": {"payment": {"entity": payment}},
        "created_at": int(time.time()),
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def run(job: dict[str, Any], out: Path) -> None:
    secret = job["secret"].encode()
    rate = float(job["rate"])
    results: list[tuple[float, float, int]] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=job["url"], limits=limits, timeout=60) as http:

        async def send(item: list[Any], scheduled: float, scheduled_epoch: float) -> None:
            body = razorpay_body(*item)
            headers = {
                "content-type": "application/json",
                "x-razorpay-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
                "x-razorpay-event-id": f"evt_{item[1]}",
            }
            try:
                response = await http.post("/webhooks/razorpay", content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            results.append((scheduled_epoch, time.perf_counter() - scheduled, status))

        tasks = []
        start = time.perf_counter() + 0.2
        start_epoch = time.time() + 0.2
        for i, item in enumerate(job["items"]):
            offset = i / rate
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(item, start + offset, start_epoch + offset)))
        await asyncio.gather(*tasks)
    with out.open("w") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    asyncio.run(run(job, Path(sys.argv[2])))


if __name__ == "__main__":
    main()
