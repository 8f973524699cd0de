"""The async engine and session factory, one per process."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger("paysaga.db")
T = TypeVar("T")


def make_engine(
    url: str, *, pool_size: int = 10, pre_ping: bool = True, pool_timeout: float = 5.0
) -> AsyncEngine:
    # pre_ping: after a database restart the pool hands out a live connection, not a dead one.
    # It costs three round trips per checkout (BEGIN, SELECT 1, ROLLBACK). Without it the first
    # use of a dead connection fails, and that failure discards every connection the pool
    # held before it; the worker, whose every attempt is retried, goes without.
    # A connect timeout of 5 s: an unreachable database fails a request or an attempt quickly
    # (503, or the next retry) instead of holding it for asyncpg's default 60 s. Likewise a
    # request that finds every pooled connection busy waits 5 s, then is a 503, not 30 s.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=pre_ping,
        pool_timeout=pool_timeout,
        # Statement parameters (attendee names and addresses) stay out of exception text,
        # which the error handlers log.
        hide_parameters=True,
        connect_args={"timeout": 5},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


async def in_savepoint(s: AsyncSession, step: str, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work` in a savepoint of the transaction: its result, or None (and nothing of it
    kept) when the database refuses it; the transaction goes on either way."""
    try:
        async with s.begin_nested():
            return await work()
    except DBAPIError as exc:
        log.warning("%s left to its own step: %s", step, str(exc)[:300])
        return None
