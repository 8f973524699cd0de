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
from urllib.parse import urlsplit


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


async def post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One HTTP/1.1 POST on its own connection; returns the status code.

    A plain socket per request instead of a pooled client: with hundreds of requests
    outstanding, httpx's pool spent more CPU than the server under test and became the
    bottleneck (the generator must never be the thing measured).
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n{head}\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest, until the server closes
        return int(status_line.split()[1])
    finally:
        writer.close()


async def run(job: dict[str, Any], out: Path) -> None:
    secret = job["secret"].encode()
    rate = float(job["rate"])
    url = urlsplit(job["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path.rstrip("/") + "/webhooks/razorpay"
    results: list[tuple[float, float, int]] = []

    async def send(item: list[Any], scheduled: float, scheduled_epoch: float) -> None:
        body = razorpay_body(*item)
        headers = {
            "content-type": "application/json",
            "x-razorpay-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
            "x-razorpay-event-id": f"evt_{item[1]}",
        }
        try:
            status = await asyncio.wait_for(post(host, port, path, body, headers), 60)
        except (OSError, TimeoutError, ValueError, IndexError):
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
