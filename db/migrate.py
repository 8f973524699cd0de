"""Applies Alembic migrations programmatically (`paysaga migrate`, the dev stack, the tests),
and tells whether a database is at the revision this code needs."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it from a thread when an event loop is already running."""
    command.upgrade(alembic_config(database_url), revision)


def head() -> str:
    """The revision this code needs the database at."""
    revision = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert revision is not None
    return revision


async def schema_behind(s: AsyncSession) -> str | None:
    """Why the database cannot serve this code, if it cannot: its schema is not at `head`
    (an upgrade that deployed the code before `paysaga migrate`). None: it is."""
    try:
        async with s.begin_nested():
            current = await s.scalar(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError:  # no alembic_version table: never migrated
        current = None
    needed = head()
    if current == needed:
        return None
    return f"schema at {current or 'nothing'}, this code needs {needed}: run `paysaga migrate`"
