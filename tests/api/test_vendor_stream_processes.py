"""Two API processes against one database (issue 28): a vendor connected to either sees an
order paid through the other. One is `paysaga api` as its own process, as deployed; the
other is served by uvicorn in this process. Each follows the event feed itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from api.app import create_app
from tests.support.signing import SECRETS
from tests.support.stack import Stack
from tests.support.vendor_stream import (
    api_process,
    paid_order,
    serving,
    stream,
    vendor_product,
    vendor_token,
)

WITHIN = 2.0


async def connections_on(url: str) -> float:
    """The process's open stream connections, as its /metrics says."""
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{url}/metrics")).text
    for line in metrics.splitlines():
        if line.startswith("paysaga_vendor_stream_connections "):
            return float(line.split()[1])
    return 0.0


async def connected(url: str, n: int) -> None:
    for _ in range(200):
        if await connections_on(url) == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url}: not {n} stream connections")


async def test_a_vendor_on_either_process_sees_an_order_paid_through_the_other(
    stack: Stack, tmp_path: Path
) -> None:
    env = {
        "PAYSAGA_DATABASE_URL": stack.settings.require_database_url(),
        "PAYSAGA_TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "PAYSAGA_TASK_QUEUE": stack.task_queue,
        "PAYSAGA_JWT_SECRET": SECRETS["jwt"],
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRETS["razorpay"],
        "PAYSAGA_MAX_HELD_PER_CUSTOMER": "1000000",
        "PAYSAGA_ORDERS_PER_MINUTE": "1000000",
    }
    app = create_app(stack.settings, temporal=stack.client)
    async with (
        api_process(env, tmp_path / "api.log") as other,
        serving(app) as here,
        httpx.AsyncClient(base_url=f"{here}/api/v1", timeout=30) as via_here,
        httpx.AsyncClient(base_url=f"{other}/api/v1", timeout=30) as via_other,
    ):
        sku = await vendor_product(via_here, stack.admin, "acme")
        async with (
            stream(here, vendor_token("acme")) as on_here,
            stream(other, vendor_token("acme")) as on_other,
        ):
            await connected(here, 1)
            await connected(other, 1)
            for pay_through in (via_other, via_here):
                order, sent = await paid_order(pay_through, sku)
                for s in (on_here, on_other):
                    arrived, message = await s.next()
                    assert (message["type"], message["order"]["id"]) == (
                        "new_order",
                        order["id"],
                    )
                    assert arrived - sent < WITHIN
                await on_here.nothing_for(0.3)
                await on_other.nothing_for(0.1)
