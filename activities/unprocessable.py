"""Data the database refuses as such (a NUL byte, a lone surrogate, a number out of range),
not because of its state: raised as a non-retryable `Unprocessable` error, since retrying it
would loop silently; the workflow parks it as a case, which keeps the data escaped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from db.errors import is_bad_data
from domain.payments import UNPROCESSABLE


@asynccontextmanager
async def refusing_bad_data(
    sessions: async_sessionmaker[AsyncSession], *, begin: bool = True
) -> AsyncIterator[AsyncSession]:
    """A session whose data errors (a NUL byte, a lone surrogate, a number out of range) are
    raised as `Unprocessable`: the same data will be refused on every retry."""
    try:
        async with sessions.begin() if begin else sessions() as s:
            yield s
    except (DBAPIError, UnicodeError) as exc:
        if not is_bad_data(exc):
            raise
        raise ApplicationError(
            f"the database refuses this confirmation's data: {exc}"[:500],
            type=UNPROCESSABLE,
            non_retryable=True,
        ) from exc


def printable(value: object, limit: int = 255) -> str:
    """A value as a case row can always hold it (escaped, ASCII, bounded)."""
    return ascii(value)[:limit]
