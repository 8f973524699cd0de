"""What the vendor stream and page tests share: the API served over real HTTP (in this
process, or as a second `paysaga api` process), a vendor's stream client, and a vendor's
order placed and paid by a signed webhook (offline mode)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.auth import make_token
from paysaga.devstack import free_port, start_process, stop_process, wait_http
from tests.support.signing import SECRETS, razorpay_payment_event, razorpay_request


def vendor_token(vendor: str, ttl: int = 3600) -> str:
    return make_token(SECRETS["jwt"], vendor, vendor=True, ttl=ttl)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` under uvicorn in this process, its lifespan run (the stream's follower with it):
    its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@asynccontextmanager
async def api_process(env: Mapping[str, str], log: Path) -> AsyncIterator[str]:
    """`paysaga api` as its own process (as deployed), on its own port: its base URL. It is
    awaited in a thread: this loop runs the worker (and maybe another API) meanwhile."""
    port = free_port()
    proc = start_process(
        [sys.executable, "-m", "paysaga.cli", "api"],
        dict(os.environ) | dict(env) | {"PAYSAGA_API_PORT": str(port)},
        log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, f"{url}/healthz", 60, {"api": proc})
        yield url
    finally:
        await asyncio.to_thread(stop_process, proc)


class Stream:
    """A vendor's stream connection that keeps what it receives, with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.received.put_nowait((time.monotonic(), json.loads(raw)))

    async def next(self, within: float = 10) -> tuple[float, dict[str, Any]]:
        """The next message and when it arrived (time.monotonic)."""
        return await asyncio.wait_for(self.received.get(), within)

    async def message(self, within: float = 10) -> dict[str, Any]:
        return (await self.next(within))[1]

    async def nothing_for(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            _, message = await self.next(seconds)
            raise AssertionError(f"unexpected message: {message}")

    async def closed(self, within: float = 10) -> int | None:
        """Until the server closes it: its close code."""
        await asyncio.wait_for(self.reader, within)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


@asynccontextmanager
async def stream(
    base_url: str, token: str | None, *, after: str | None = None, first_message: bool = False
) -> AsyncIterator[Stream]:
    """`GET /vendor/stream`, authenticated by the upgrade's header or, `first_message`, as a
    browser does; `token=None`: not at all."""
    url = base_url.replace("http://", "ws://") + "/api/v1/vendor/stream"
    if after is not None:
        url += f"?after={after}"
    headers = bearer(token) if token is not None and not first_message else {}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        if token is not None and first_message:
            await ws.send(json.dumps({"type": "auth", "token": token}))
        s = Stream(ws)
        try:
            yield s
        finally:
            s.reader.cancel()
            await asyncio.gather(s.reader, return_exceptions=True)


async def vendor_product(
    http: httpx.AsyncClient, admin: Mapping[str, str], vendor: str, *, acceptance: bool = True
) -> str:
    sku = f"V-{uuid.uuid4().hex[:8]}"
    product = {
        "sku": sku,
        "name": f"Hamper from {vendor}",
        "unit_amount": 2500,
        "currency": "EUR",
        "stock": 50,
        "vendor": vendor,
        "requires_acceptance": acceptance,
    }
    created = await http.post("/admin/products", json=product, headers=dict(admin))
    assert created.status_code == 201, created.text
    return sku


async def place(http: httpx.AsyncClient, sku: str, customer: str = "alice") -> dict[str, Any]:
    order = await http.post(
        "/orders",
        json={
            "items": [{"sku": sku, "quantity": 1}],
            "provider": "razorpay",
            "attendee": {"name": "Ada Lovelace", "email": "ada@example.com"},
        },
        headers=bearer(make_token(SECRETS["jwt"], customer)),
    )
    assert order.status_code == 201, order.text
    body: dict[str, Any] = order.json()
    return body


async def pay(http: httpx.AsyncClient, order: dict[str, Any]) -> float:
    """The order's signed `payment.captured` webhook, accepted: when it was sent."""
    event = razorpay_payment_event(
        order["payment"]["intent_id"],
        f"pay_{uuid.uuid4().hex[:14]}",
        order["amount"],
        order["currency"],
    )
    body, headers = razorpay_request(event)
    sent = time.monotonic()
    response = await http.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.json() == {"result": "accepted"}, response.text
    return sent


async def paid_order(
    http: httpx.AsyncClient, sku: str, customer: str = "alice"
) -> tuple[dict[str, Any], float]:
    """A vendor's order placed and paid by webhook: the order as placed, and when the
    webhook was sent."""
    order = await place(http, sku, customer)
    return order, await pay(http, order)
