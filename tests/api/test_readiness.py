"""Readiness that tells the truth (issue 27, CONTRACT `/readyz`): on a namespace without a
search attribute, or a database behind the code, `/readyz` answers 503 naming each problem and
the command that mends it, and the worker does not start. Against a real dev server started
without `OrderState`, and a real database migrated only part of the way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from db.migrate import head, upgrade
from domain.workflow_names import ORDER_ID, PAYMENT_STATE, TRANSACTION_ID
from paysaga.postgres import EmbeddedPostgres
from paysaga.settings import Settings
from tests.support.stack import BIN, settings_for
from worker import run_worker

REGISTER = "temporal operator search-attribute create --namespace default --name OrderState"


@pytest.fixture(scope="module")
async def without_order_state() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server on which an operator registered every attribute but `OrderState` (an
    upgraded cluster that followed the old CONTRACT)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=[PAYMENT_STATE, ORDER_ID, TRANSACTION_ID],
    )
    yield env
    await env.shutdown()


async def readiness(settings: Settings, temporal: Any) -> httpx.Response:
    app = create_app(settings, temporal=temporal)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paysaga/api/v1"
    ) as http:
        return await http.get("/readyz")


async def test_a_missing_search_attribute_is_named_by_readyz_and_stops_the_worker(
    without_order_state: WorkflowEnvironment, database_url: str
) -> None:
    settings = settings_for(database_url, f"q-{uuid.uuid4()}")
    ready = await readiness(settings, without_order_state.client)
    assert ready.status_code == 503
    body = ready.json()
    assert (body["ready"], body["database"], body["schema_revision"], body["temporal"]) == (
        False,
        "ok",
        "ok",
        "ok",
    )
    assert "search attribute OrderState is not registered" in body["search_attributes"]
    assert f"{REGISTER} --type Keyword" in body["search_attributes"]
    assert "PaymentState" not in body["search_attributes"]

    address = without_order_state.client.service_client.config.target_host
    worker_settings = settings_for(
        database_url, f"q-{uuid.uuid4()}", PAYSAGA_TEMPORAL_ADDRESS=address
    )
    with pytest.raises(SystemExit, match="OrderState") as refused:
        await run_worker(worker_settings)  # (not in a task: SystemExit would stop the loop)
    assert REGISTER in str(refused.value)


async def test_a_schema_behind_the_code_is_named_by_readyz(
    pg: EmbeddedPostgres, temporal_env: WorkflowEnvironment
) -> None:
    name = f"behind_{uuid.uuid4().hex[:8]}"
    await pg.create_database(name)
    url = pg.url(name)
    await asyncio.to_thread(upgrade, url, "0004")
    ready = await readiness(settings_for(url, "q"), temporal_env.client)
    assert ready.status_code == 503
    body = ready.json()
    assert body["schema_revision"] == (
        f"schema at 0004, this code needs {head()}: run `paysaga migrate`"
    )
    assert (body["database"], body["search_attributes"]) == ("ok", "ok")
    await asyncio.to_thread(upgrade, url)
    assert (await readiness(settings_for(url, "q"), temporal_env.client)).status_code == 200
    # A newer release migrated first (a rolling deploy): a revision this code does not know
    # is ahead of it, not behind, and this code still serves.
    admin = await asyncpg.connect(pg.dsn(name))
    try:
        await admin.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    finally:
        await admin.close()
    ahead = await readiness(settings_for(url, "q"), temporal_env.client)
    assert ahead.status_code == 200 and ahead.json()["schema_revision"] == "ok"
