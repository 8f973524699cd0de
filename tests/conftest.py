"""One real PostgreSQL and one real Temporal dev server for the whole session; each test gets
a clean database, its own task queue and worker, and the API in-process over ASGI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from db.invariants import check_invariants
from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker
from domain.workflow_names import ORDER_ID, ORDER_STATE, PAYMENT_STATE, TRANSACTION_ID
from gateways import Gateways, registry
from paysaga.postgres import EmbeddedPostgres
from paysaga.temporal import build_worker, mail_config, replay_failures
from tests.gateways.testpay import Testpay
from tests.support.stack import BIN, Refuse, Stack, settings_for
from workflows.mail_relay import ensure_mail_relay, relay_workflow_id
from workflows.window_keeper import ensure_window_keeper, keeper_workflow_id

TABLES = (
    "products, orders, order_items, payments, audit_log, security_events, "
    "reconciliation_cases, tickets, events, notifications, refunds, escalations"
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


@pytest.fixture
def testpay() -> Iterator[None]:
    """The test-only gateway (`tests.gateways.testpay`) installed for one test."""
    registry.register(Testpay)  # the one line that installs a gateway
    yield
    registry.unregister(Testpay.name)


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
        await ensure_window_keeper(client, task_queue)
        if mail is not None:
            await ensure_mail_relay(client, task_queue)
        yield Stack(http, client, sessions, task_queue, settings)
        await client.get_workflow_handle(keeper_workflow_id(task_queue)).terminate()
        if mail is not None:
            await client.get_workflow_handle(relay_workflow_id(task_queue)).terminate()
        # Every integration test ends with the financial invariants holding.
        violations = await check_invariants(sessions, client, task_queue)
        assert violations == [], "\n".join(map(str, violations))
        # ... and every history it made replays through the workflow sandbox.
        _, failures = await replay_failures(client, f'TaskQueue = "{task_queue}"')
        assert failures == {}


@pytest.fixture
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory for one test's stack of real processes (tests/faults, tests/integrity)."""
    yield tmp_path_factory.mktemp("fault")


@pytest.fixture
async def refuse(engine: AsyncEngine) -> AsyncIterator[Refuse]:
    """Makes a table refuse writes (a trigger that raises), as a failing database would."""
    refusals = Refuse(engine)
    yield refusals
    await refusals.lift_all()
