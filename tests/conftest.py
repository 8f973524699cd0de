"""One real PostgreSQL and one real Temporal dev server for the whole session; each test gets
a clean database, its own task queue and worker, and the API in-process over ASGI."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import make_token
from db.invariants import check_invariants
from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker
from domain.confirmation import ConfirmationState
from domain.payments import ConfirmationOutcome
from domain.workflow_names import ORDER_ID, ORDER_STATE, PAYMENT_STATE, TRANSACTION_ID
from gateways import Gateways
from paysaga.postgres import EmbeddedPostgres
from paysaga.settings import Settings
from paysaga.temporal import build_worker, mail_config, replay_failures
from tests.helpers import SECRETS
from workflows.mail_relay import ensure_mail_relay, relay_workflow_id
from workflows.payment_confirmation import ConfirmPaymentWorkflow

BIN = Path(sys.executable).parent
TABLES = (
    "products, orders, order_items, payments, audit_log, security_events, "
    "reconciliation_cases, tickets, events, notifications, refunds"
)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def database_url(pg: EmbeddedPostgres) -> str:
    await pg.create_database("paysaga_test")
    url = pg.url("paysaga_test")
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=[PAYMENT_STATE, ORDER_ID, TRANSACTION_ID, ORDER_STATE],
    )
    yield env
    await env.shutdown()


def settings_for(database_url: str, task_queue: str, **overrides: str) -> Settings:
    env = {
        "PAYSAGA_DATABASE_URL": database_url,
        "PAYSAGA_TASK_QUEUE": task_queue,
        "PAYSAGA_JWT_SECRET": SECRETS["jwt"],
        "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRETS["razorpay"],
        "PAYSAGA_STRIPE_WEBHOOK_SECRETS": SECRETS["stripe"],
        "PAYSAGA_STANDARD_WEBHOOK_SECRETS": SECRETS["standard"],
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
        self, provider: str, amount: int = 49900, currency: str = "INR", stock: int = 10
    ) -> dict[str, Any]:
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
        order = await self.http.post(
            "/orders",
            json={"items": [{"sku": sku, "quantity": 1}], "provider": provider},
            headers=self.user(),
        )
        assert order.status_code == 201, order.text
        body: dict[str, Any] = order.json()
        return body

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


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra PAYSAGA_* settings for the stack; a test module overrides this fixture."""
    return {}


@pytest.fixture
async def stack(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    stack_env: dict[str, str],
) -> AsyncIterator[Stack]:
    task_queue = f"paysaga-test-{uuid.uuid4()}"
    client = temporal_env.client
    settings = settings_for(database_url, task_queue, **stack_env)
    app = create_app(settings, temporal=client)
    mail = mail_config(settings)  # a test module's stack_env sets PAYSAGA_SMTP_HOST for mail
    async with (
        build_worker(
            client,
            sessions,
            task_queue,
            sandboxed=settings.workflow_sandbox,
            mail=mail,
            gateways=Gateways(settings.env),
        ),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://paysaga/api/v1"
        ) as http,
    ):
        if mail is not None:
            await ensure_mail_relay(client, task_queue)
        yield Stack(http, client, sessions, task_queue, settings)
        if mail is not None:
            await client.get_workflow_handle(relay_workflow_id(task_queue)).terminate()
        # Every integration test ends with the financial invariants holding.
        violations = await check_invariants(sessions, client, task_queue)
        assert violations == [], "\n".join(map(str, violations))
        # ... and every history it made replays through the workflow sandbox.
        _, failures = await replay_failures(client, f'TaskQueue = "{task_queue}"')
        assert failures == {}


@pytest.fixture
async def refuse(engine: AsyncEngine) -> AsyncIterator[Refuse]:
    """Makes a table refuse writes (a trigger that raises), as a failing database would."""
    refusals = Refuse(engine)
    yield refusals
    await refusals.lift_all()


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
