"""Scale-out (issue 27): two API processes and two workers on one Temporal server and one
PostgreSQL. Orders are placed through both APIs, every webhook is delivered to both, and one
worker is SIGKILLed halfway through. Every order ends paid exactly once, `paysaga admin
check` is clean, and each attendee's mail is sent once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from mail.sink import FileSink
from paysaga.devstack import free_port, start_process, stop_process, wait_http
from tests.support.fault_stack import FaultStack, Sent, _token, deliver
from tests.support.signing import SECRETS

pytestmark = pytest.mark.faults
ORDERS = 40


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    directory = tmp_path_factory.mktemp("mail")
    port = free_port()
    controller = Controller(FileSink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, directory
    controller.stop()


@pytest.fixture
def fault_env(smtp: tuple[int, Path]) -> dict[str, str]:
    return {"PAYSAGA_SMTP_HOST": "127.0.0.1", "PAYSAGA_SMTP_PORT": str(smtp[0])}


def api_env(stack: FaultStack, port: int) -> dict[str, str]:
    return stack.env | {
        "PAYSAGA_API_PORT": str(port),
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRETS["razorpay"],
        "PAYSAGA_MAX_HELD_PER_CUSTOMER": "100000",
        "PAYSAGA_ORDERS_PER_MINUTE": "100000",
    }


async def test_two_apis_and_two_workers_one_killed(
    fault_stack: FaultStack, smtp: tuple[int, Path]
) -> None:
    s = fault_stack
    second = start_process(
        [sys.executable, "-m", "paysaga.cli", "worker"], s.env, s.directory / "worker-2.log"
    )
    ports = [free_port(), free_port()]
    apis = [
        start_process(
            [sys.executable, "-m", "paysaga.cli", "api"],
            api_env(s, port),
            s.directory / f"api-{i}.log",
        )
        for i, port in enumerate(ports)
    ]
    bases = [f"http://127.0.0.1:{port}/api/v1" for port in ports]
    try:
        for port, proc in zip(ports, apis, strict=True):
            await asyncio.to_thread(
                wait_http, f"http://127.0.0.1:{port}/readyz", 120, {"api": proc}
            )
        admin = {"Authorization": f"Bearer {_token(admin=True)}"}
        user = {"Authorization": f"Bearer {_token()}"}
        sku = f"SEAT-{uuid.uuid4().hex[:6]}"
        product = {"sku": sku, "name": "Seat", "unit_amount": 4900, "currency": "EUR"}
        orders: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30) as http:
            made = await http.post(
                f"{bases[0]}/admin/products", json=product | {"stock": ORDERS}, headers=admin
            )
            assert made.status_code == 201, made.text
            for i in range(ORDERS):  # alternately through each API
                body = {
                    "items": [{"sku": sku, "quantity": 1}],
                    "provider": "razorpay",
                    "attendee": {"name": f"A{i}", "email": f"a{i}@attendees.example.org"},
                }
                placed = await http.post(f"{bases[i % 2]}/orders", json=body, headers=user)
                assert placed.status_code == 201, placed.text
                orders.append(placed.json())
        started = time.monotonic()
        half, sent = ORDERS // 2, Sent()
        async with httpx.AsyncClient(timeout=30) as gateway:

            async def both(batch: list[dict[str, Any]]) -> None:
                urls = [f"{base}/webhooks/razorpay" for base in bases]
                await asyncio.gather(*(deliver(gateway, u, o, sent) for o in batch for u in urls))

            await both(orders[:half])
            s.kill_worker()  # halfway: one worker SIGKILLed, its tasks in flight with it
            killed_at = time.monotonic() - started
            await both(orders[half:])
        # Each webhook went to both APIs: one of each pair started it, the other was told so.
        assert Counter(sent.results) == {"accepted": ORDERS, "duplicate": ORDERS}
        recovery = await s.wait_until("all paid", lambda: s.all_done(ORDERS), limit=240)
        assert await s.outcome(orders) == {
            "confirmations": ORDERS,
            "paid": ORDERS,
            "complete": ORDERS,
            "duplicates": 0,
            "lost": 0,
        }
        await s.check()
        mail_dir = smtp[1]

        async def all_mailed() -> bool:
            return len(list(mail_dir.glob("*.eml"))) >= ORDERS

        await s.wait_until("every ticket mailed", all_mailed, limit=240)
        await asyncio.sleep(2)  # a mail sent twice would arrive by now
        recipients = Counter(
            address.addr_spec
            for p in mail_dir.glob("*.eml")
            for address in email.message_from_bytes(p.read_bytes(), policy=email.policy.default)[
                "To"
            ].addresses
        )
        assert recipients == {f"a{i}@attendees.example.org": 1 for i in range(ORDERS)}
        print(
            f"scale-out: {ORDERS} orders through 2 APIs, {2 * ORDERS} webhooks, worker killed at"
            f" {killed_at:.1f} s; all paid once {recovery:.1f} s later; {ORDERS} mails, one each"
        )
    finally:
        for proc in [second, *apis]:
            stop_process(proc, grace=20)
