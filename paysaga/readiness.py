"""What must hold before paysaga serves: every search attribute its workflows write is
registered on the namespace, and the database schema is at the code's revision. Found out
here, at start (the worker refuses to start) and on every `/readyz` (503), never order by
order: on a namespace without a search attribute every workflow that writes it would fail
its task, one warning per payment, while readiness said 200.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from db.migrate import schema_behind
from paysaga.temporal import SEARCH_ATTRIBUTES

log = logging.getLogger("paysaga.readiness")


async def missing_search_attributes(client: Client) -> list[str]:
    """Each attribute the namespace lacks, with the command that registers it."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = {*listed.custom_attributes, *listed.system_attributes}
    return [
        f"search attribute {name} is not registered on namespace {client.namespace}: "
        f"temporal operator search-attribute create --namespace {client.namespace} "
        f"--name {name} --type {kind}"
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in known
    ]


async def problems(client: Client, sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Everything that keeps paysaga from serving correctly; empty when it may. A database
    that does not answer now is not one of them: that passes, and activities retry it."""
    try:
        found = await missing_search_attributes(client)
    except RPCError as exc:  # a namespace whose operator API this key may not use
        log.warning("search attributes not checked, cannot list them: %s", exc)
        found = []
    try:
        async with sessions() as s:
            behind = await schema_behind(s)
    except (DBAPIError, InterfaceError, OSError) as exc:
        log.warning("database schema not checked, database unavailable: %s", exc)
        behind = None
    return [*found, *([behind] if behind else [])]
