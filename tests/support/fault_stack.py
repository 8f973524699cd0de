"""A stack of real processes that can really be stopped, for the fault tests and the integrity
campaign: its own PostgreSQL (embedded), its own Temporal dev server on a persistent file, a
worker subprocess (`paysaga worker`), and the API in-process over ASGI. The gateway side is
a sender that retries on 503, as gateways do."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from db.invariants import check_invariants
from db.migrate import upgrade
from db.models import AuditEntry, Event, Order, Payment, Ticket
from db.session import make_engine, make_sessionmaker
from paysaga.devstack import (
    free_port,
    start_process,
    stop_process,
    temporal_dev_args,
    wait_for_port,
)
from paysaga.postgres import EmbeddedPostgres
from paysaga.settings import Settings
from paysaga.temporal import connect
from tests.support.signing import SECRETS, razorpay_payment_event, razorpay_request
from tests.support.stack import settings_for


class TemporalServer:
    """`temporal server start-dev` on a persistent SQLite file, stoppable and restartable."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = temporal_dev_args(self.db, self.port, log_level="error")
        self.proc = start_process(args, os.environ, self.log)
        wait_for_port("127.0.0.1", self.port, 60, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=30)


@dataclass
class Sent:
    results: list[str] = field(default_factory=list)
    unavailable: int = 0  # 503s (and refused connections) the sender retried


@dataclass
class FaultStack:
    directory: Path
    pg: EmbeddedPostgres
    temporal: TemporalServer
    env: dict[str, str]
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: Client
    http: httpx.AsyncClient
    worker: subprocess.Popen[bytes] | None = None
    worker_log: Path = Path()

    def start_worker(self) -> None:
        self.worker_log = self.directory / "worker.log"
        cli = [sys.executable, "-m", "paysaga.cli", "worker"]
        self.worker = start_process(cli, self.env, self.worker_log)

    async def worker_polling(self, limit: float = 60) -> None:
        """Until the worker polls its task queue: a test that stops Temporal before then
        would see a worker that never started (it exits when Temporal cannot be reached at
        start, as a supervisor restarting it expects), not the outage it meant to make."""
        start = time.monotonic()
        while b"worker polling task queue" not in self.worker_log.read_bytes():
            assert self.worker is not None and self.worker.poll() is None, "worker exited"
            if time.monotonic() - start > limit:
                raise AssertionError(f"worker not polling in {limit:.0f} s")
            await asyncio.sleep(0.1)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_process(self.worker, grace=20)

    async def place_orders(self, n: int) -> list[dict[str, Any]]:
        admin = {"Authorization": f"Bearer {_token(admin=True)}"}
        user = {"Authorization": f"Bearer {_token()}"}
        sku = f"SEAT-{uuid.uuid4().hex[:6]}"
        product = {"sku": sku, "name": "Seat", "unit_amount": 4900, "currency": "EUR", "stock": n}
        assert (await self.http.post("/admin/products", json=product, headers=admin)).is_success
        orders = []
        for _ in range(n):
            created = await self.http.post(
                "/orders",
                json={"items": [{"sku": sku, "quantity": 1}], "provider": "razorpay"},
                headers=user,
            )
            assert created.status_code == 201, created.text
            orders.append(created.json())
        return orders

    async def send(self, orders: list[dict[str, Any]], sent: Sent) -> None:
        """Each confirmation as a gateway sends it: retried on 503 until it is taken."""
        await asyncio.gather(*(deliver(self.http, "/webhooks/razorpay", o, sent) for o in orders))

    async def paid(self) -> int:
        """Orders paid, read by a fresh connection (the pool may hold dead ones)."""
        try:
            async with self.sessions() as s:
                n = await s.scalar(
                    select(func.count()).select_from(Order).where(Order.status == "paid")
                )
                return int(n or 0)
        except (DBAPIError, OSError):
            return -1

    async def wait_until(self, what: str, predicate: Any, limit: float = 180) -> float:
        """Seconds until `await predicate()` is true."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if await predicate():
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what} not reached in {limit:.0f} s")

    async def all_done(self, n: int) -> bool:
        """Every order paid, audited twice and ticketed (False while the database is down)."""
        try:
            async with self.sessions() as s:
                # The confirmation's own pair per order; admin and schedule retries add more.
                audit = await s.scalar(
                    select(func.count())
                    .select_from(AuditEntry)
                    .where(AuditEntry.action.in_(["payment.confirmed", "order.status_changed"]))
                )
                tickets = await s.scalar(select(func.count()).select_from(Ticket))
        except (DBAPIError, OSError):
            return False
        return await self.paid() == n and audit == 2 * n and tickets == n

    async def outcome(self, orders: list[dict[str, Any]]) -> dict[str, int]:
        """Paid, duplicates and lost, counted from the rows of every order."""
        ids = [uuid.UUID(o["id"]) for o in orders]
        per_order: dict[str, dict[str, int]] = {str(i): {} for i in ids}
        async with self.sessions() as s:
            per_table = {
                "payments": select(Payment.order_id, func.count())
                .where(Payment.status == "paid")
                .group_by(Payment.order_id),
                "tickets": select(Ticket.order_id, func.count()).group_by(Ticket.order_id),
                "events": select(Event.order_id, func.count())
                .where(Event.type == "OrderPaid")
                .group_by(Event.order_id),
                "audit_log": select(AuditEntry.order_id, func.count())
                .where(AuditEntry.action == "order.status_changed")
                .group_by(AuditEntry.order_id),
            }
            for table, query in per_table.items():
                for order_id, n in await s.execute(query):
                    per_order[str(order_id)][table] = n
            statuses = dict(
                (str(i), st) for i, st in (await s.execute(select(Order.id, Order.status))).all()
            )
        duplicates = sum(1 for counts in per_order.values() if any(n > 1 for n in counts.values()))
        paid = sum(1 for i in per_order if statuses[i] == "paid")
        complete = sum(1 for counts in per_order.values() if len(counts) == 4)
        return {
            "confirmations": len(orders),
            "paid": paid,
            "complete": complete,
            "duplicates": duplicates,
            "lost": len(orders) - paid,
        }

    async def check(self) -> None:
        violations = await check_invariants(self.sessions, self.client, self.settings.task_queue)
        assert violations == [], "\n".join(map(str, violations))
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "paysaga.cli", "admin", "check"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr

    async def needs_reconciliation(self) -> int:
        query = 'PaymentState = "needs_reconciliation" AND ExecutionStatus = "Running"'
        return (await self.client.count_workflows(query)).count


async def deliver(http: httpx.AsyncClient, url: str, order: dict[str, Any], sent: Sent) -> None:
    """The order's Razorpay payment webhook to `url`, as a gateway sends it: retried on 503
    and on a refused connection until it is taken; what it answered goes into `sent`."""
    event = razorpay_payment_event(
        order["payment"]["intent_id"], f"pay_{order['id'][:8]}", order["amount"], "EUR"
    )
    body, headers = razorpay_request(event)
    for _ in range(600):
        try:
            response = await http.post(url, content=body, headers=headers)
        except (httpx.TransportError, OSError):
            sent.unavailable += 1
        else:
            if response.status_code == 200:
                sent.results.append(response.json()["result"])
                return
            assert response.status_code == 503, response.text
            sent.unavailable += 1
        await asyncio.sleep(0.5)
    raise AssertionError("the gateway gave up")


def _token(admin: bool = False) -> str:
    from api.auth import make_token

    return make_token(SECRETS["jwt"], "ops" if admin else "alice", admin=admin)


@asynccontextmanager
async def open_stack(directory: Path, env_overrides: dict[str, str]) -> AsyncIterator[FaultStack]:
    """The stack of real processes, as a context manager (the integrity campaign, whose test
    is synchronous, enters it on its own loop)."""
    pg = EmbeddedPostgres(directory / "pg")
    await asyncio.to_thread(pg.start)
    temporal = TemporalServer(directory)
    engine: AsyncEngine | None = None
    stack: FaultStack | None = None
    try:
        await pg.create_database("paysaga")
        url = pg.url("paysaga")
        await asyncio.to_thread(upgrade, url)
        await asyncio.to_thread(temporal.start)
        task_queue = "paysaga"
        settings = settings_for(
            url, task_queue, PAYSAGA_TEMPORAL_ADDRESS=temporal.address, **env_overrides
        )
        env = (
            os.environ
            | {
                "PAYSAGA_DATABASE_URL": url,
                "PAYSAGA_TEMPORAL_ADDRESS": temporal.address,
                "PAYSAGA_TASK_QUEUE": task_queue,
                "PAYSAGA_JWT_SECRET": SECRETS["jwt"],
            }
            | env_overrides
        )
        client = await connect(settings)
        engine = make_engine(url)
        app = create_app(settings, temporal=client)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://paysaga/api/v1", timeout=60
        ) as http:
            stack = FaultStack(
                directory,
                pg,
                temporal,
                env,
                settings,
                engine,
                make_sessionmaker(engine),
                client,
                http,
            )
            stack.start_worker()
            await stack.worker_polling()
            yield stack
    finally:
        if stack is not None:
            stack.stop_worker()
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(temporal.stop)
        await asyncio.to_thread(pg.stop)
