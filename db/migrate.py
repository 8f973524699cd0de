"""Applies Alembic migrations programmatically (`paysaga migrate`, the dev stack, the tests),
and tells whether a database is at the revision this code needs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"
UNDEFINED_TABLE = "42P01"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it from a thread when an event loop is already running."""
    command.upgrade(alembic_config(database_url), revision)


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """This code's head and every revision it knows (read once: parsing them costs ms)."""
    script = ScriptDirectory.from_config(alembic_config("postgresql://"))
    revision = script.get_current_head()
    assert revision is not None
    return revision, frozenset(r.revision for r in script.walk_revisions())


def head() -> str:
    """The revision this code needs the database at."""
    return _revisions()[0]


async def schema_behind(s: AsyncSession) -> str | None:
    """Why the database cannot serve this code, if it cannot: its schema is behind `head`
    (an upgrade that deployed the code before `paysaga migrate`). None: it is at head, or
    ahead of it (a revision this code does not know: a newer release migrated first, as in a
    rolling deploy, and migrations only add)."""
    try:  # the caller's session ends right after: no savepoint needed to survive an error
        current = await s.scalar(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNDEFINED_TABLE:
            raise
        current = None  # never migrated
    needed, known = _revisions()
    if current == needed or (current is not None and current not in known):
        return None
    return f"schema at {current or 'nothing'}, this code needs {needed}: run `paysaga migrate`"
