"""Least privilege (issue 27): the API and the worker log in as a member of `paysaga_app`
(migration 0006), which reads and writes rows but owns nothing. It cannot delete or change
an audit entry, truncate the trail, disable its trigger or drop a table; and the API runs
on it, checkout to paid."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from domain.payments import confirmation_workflow_id
from paysaga.postgres import EmbeddedPostgres
from tests.support.gateway_events import signed_confirmation
from tests.support.outcomes import ONE_CONFIRMATION, effects
from tests.support.stack import Stack


@pytest.fixture
async def app_role(pg: EmbeddedPostgres) -> str:
    """A login role in the app's group, as compose's `paysaga_api` is."""
    name = f"paysaga_api_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN IN ROLE paysaga_app")
    finally:
        await admin.close()
    return name


def as_role(url: str, role: str) -> str:
    return url.replace("://postgres@", f"://{role}@", 1)


@pytest.fixture
def stack_env(app_role: str, database_url: str) -> dict[str, str]:
    return {"PAYSAGA_DATABASE_URL": as_role(database_url, app_role)}


async def test_the_app_role_cannot_touch_the_audit_trail_or_the_schema(
    stack: Stack, app_role: str, database_url: str
) -> None:
    order = await stack.place_order("standard")  # the API, as the app role
    tx = f"txn_{uuid.uuid4().hex[:14]}"
    sent = await stack.post("/webhooks/standard", signed_confirmation("standard", order, tx))
    assert sent.json() == {"result": "accepted"}
    await stack.result(confirmation_workflow_id("standard", tx))
    assert (await stack.order(order["id"]))["status"] == "paid"
    assert await effects(stack.sessions, order["id"]) == ONE_CONFIRMATION

    dsn = as_role(database_url, app_role).replace("postgresql+asyncpg://", "postgresql://")
    app = await asyncpg.connect(dsn)
    try:
        assert await app.fetchval("SELECT count(*) FROM audit_log") == 2
        refused = [
            "DELETE FROM audit_log",
            "UPDATE audit_log SET action = 'forged'",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "DROP TABLE orders",
            "DELETE FROM events",
            "UPDATE events SET type = 'forged'",
            "UPDATE alembic_version SET version_num = '0001'",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)
        assert await app.fetchval("SELECT count(*) FROM audit_log") == 2
    finally:
        await app.close()
