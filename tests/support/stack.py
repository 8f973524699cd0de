"""The in-process stack the integration tests drive (API over ASGI, a worker, the Temporal
dev server, PostgreSQL), its settings, and a table that refuses writes. The fixtures that
build them are in tests/conftest.py."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import make_token
from domain.confirmation import ConfirmationState
from domain.payments import ConfirmationOutcome, confirmation_workflow_id
from paysaga.settings import Settings
from tests.support.signing import SECRETS, razorpay_payment_event, razorpay_request
from workflows.payment_confirmation import ConfirmPaymentWorkflow

BIN = Path(sys.executable).parent
# A payment window of two seconds, as a test module's `stack_env`.
SHORT = {"PAYSAGA_PAYMENT_WINDOW_SECONDS": "2"}


def settings_for(database_url: str, task_queue: str, **overrides: str) -> Settings:
    env = {
        "PAYSAGA_DATABASE_URL": database_url,
        "PAYSAGA_TASK_QUEUE": task_queue,
        "PAYSAGA_JWT_SECRET": SECRETS["jwt"],
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRETS["razorpay"],
        "PAYSAGA_STRIPE_WEBHOOK_SECRETS": SECRETS["stripe"],
        "PAYSAGA_STANDARD_WEBHOOK_SECRETS": SECRETS["standard"],
        # Most tests place many orders as one customer; tests/api/test_holds.py sets its own.
        "PAYSAGA_MAX_HELD_PER_CUSTOMER": "1000000",
        "PAYSAGA_ORDERS_PER_MINUTE": "1000000",
    } | overrides
    return Settings.from_env(env)


@dataclass
class Stack:
    """The real thing, in-process: API over ASGI, a worker, Temporal dev server, PostgreSQL."""

    http: httpx.AsyncClient
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    task_queue: str
    settings: Settings

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'ops', admin=True)}"}

    def user(self, sub: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], sub)}"}

    async def place_order(
        self,
        provider: str,
        amount: int = 49900,
        currency: str = "INR",
        stock: int = 10,
        attendee: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sku = await self.new_product(stock, currency, amount)
        order = await self.http.post(
            "/orders",
            json={"items": [{"sku": sku, "quantity": 1}], "provider": provider}
            | ({"attendee": attendee} if attendee else {}),
            headers=self.user(),
        )
        assert order.status_code == 201, order.text
        body: dict[str, Any] = order.json()
        return body

    async def new_product(self, stock: int, currency: str = "INR", amount: int = 49900) -> str:
        """A product on sale with `stock` units; its sku."""
        sku = f"CONF-{uuid.uuid4().hex[:8]}"
        product = {
            "sku": sku,
            "name": "Conference pass",
            "unit_amount": amount,
            "currency": currency,
            "stock": stock,
        }
        created = await self.http.post("/admin/products", json=product, headers=self.admin)
        assert created.status_code == 201, created.text
        return sku

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/orders/{order_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def post(self, path: str, request: tuple[bytes, dict[str, str]]) -> httpx.Response:
        body, headers = request
        return await self.http.post(path, content=body, headers=headers)

    async def result(self, workflow_id: str) -> ConfirmationOutcome:
        """The workflow's outcome: waits for the saga itself, not for a guessed time."""
        handle = self.client.get_workflow_handle(workflow_id, result_type=ConfirmationOutcome)
        return await asyncio.wait_for(handle.result(), timeout=60)

    async def wait_state(
        self,
        workflow_id: str,
        state: str,
        until: Callable[[ConfirmationState], bool] | None = None,
    ) -> ConfirmationState:
        """Polls the `state` query until the workflow reports `state` (parked workflows)."""
        return await wait_state(self.client, workflow_id, state, until)


async def wait_state(
    client: Client,
    workflow_id: str,
    state: str,
    until: Callable[[ConfirmationState], bool] | None = None,
) -> ConfirmationState:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(300):
        current = await handle.query(ConfirmPaymentWorkflow.state)
        if current.state == state and (until is None or until(current)):
            return current
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never reached {state}: {current}")


async def confirm(stack: Stack, tx: str) -> tuple[dict[str, Any], str]:
    """A Razorpay order, and its confirmation accepted: the order and its workflow id."""
    order = await stack.place_order("razorpay")
    event = razorpay_payment_event(order["payment"]["intent_id"], tx, order["amount"])
    response = await stack.post("/webhooks/razorpay", razorpay_request(event))
    assert response.json() == {"result": "accepted"}
    return order, confirmation_workflow_id("razorpay", tx)


class Refuse:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.active: set[tuple[str, str]] = set()

    async def __call__(self, table: str, operation: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION paysaga_test_refuse() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused: % on %', "
                    "TG_OP, TG_TABLE_NAME; END $$"
                )
            )
            await conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table}_{operation.lower()} BEFORE {operation} "
                    f"ON {table} FOR EACH ROW EXECUTE FUNCTION paysaga_test_refuse()"
                )
            )
        self.active.add((table, operation))

    async def lift(self, table: str, operation: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(f"DROP TRIGGER IF EXISTS refuse_{table}_{operation.lower()} ON {table}")
            )
        self.active.discard((table, operation))

    async def lift_all(self) -> None:
        for table, operation in list(self.active):
            await self.lift(table, operation)
