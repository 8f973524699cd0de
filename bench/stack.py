"""The bench's stack, as the dev stack starts it: embedded PostgreSQL, the Temporal dev
server on a file, one worker and the API under uvicorn, each its own process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from db.migrate import upgrade
from paysaga.devstack import free_port, spawn, temporal_dev_args, wait_for_port, wait_http
from paysaga.postgres import EmbeddedPostgres

SECRET = "bench-razorpay-webhook-secret"  # the API's Razorpay webhook secret; loadgen signs with it


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    database_url: str
    temporal_address: str
    api_url: str
    worker: subprocess.Popen[bytes]
    api: subprocess.Popen[bytes]

    @property
    def pgdata(self) -> Path:
        return self.root / "pg"


SMTP = ("PAYSAGA_SMTP_HOST", "PAYSAGA_SMTP_PORT", "PAYSAGA_SMTP_FROM")


@contextmanager
def dev_stack(
    root: Path, smtp: tuple[str, int] | None = None, extra: dict[str, str] | None = None
) -> Iterator[Stack]:
    """`smtp`: the mail server the worker sends to; None: mail off (the relay does not run),
    whatever the environment says. `extra`: more PAYSAGA_* settings for the worker and API."""
    with ExitStack() as stack:
        pg = EmbeddedPostgres(root / "pg")
        pg.start()
        stack.callback(pg.stop)
        asyncio.run(pg.create_database("paysaga"))
        url = pg.url("paysaga")
        upgrade(url)
        port = free_port()
        args = temporal_dev_args(root / "temporal.db", port, log_level="error")
        temporal = spawn(stack, args, dict(os.environ), root / "temporal.log")
        wait_for_port("127.0.0.1", port, 60, temporal)
        api_port = free_port()
        env = (
            dict(os.environ)
            | {
                "PAYSAGA_DATABASE_URL": url,
                "PAYSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                "PAYSAGA_API_PORT": str(api_port),
                "PAYSAGA_JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789",
                "PAYSAGA_RAZORPAY_WEBHOOK_SECRETS": SECRET,
                # Longer than the whole run: no bench order expires while it waits its turn.
                "PAYSAGA_PAYMENT_WINDOW_SECONDS": "7200",
                # The load comes from a handful of customers: no per-customer limit applies.
                "PAYSAGA_MAX_HELD_PER_CUSTOMER": "1000000000",
                "PAYSAGA_ORDERS_PER_MINUTE": "1000000000",
            }
            | (extra or {})
        )
        for key in SMTP:
            env.pop(key, None)
        if smtp is not None:
            env |= dict(zip(SMTP, (smtp[0], str(smtp[1]), "tickets@bench.localhost"), strict=True))
        cli = [sys.executable, "-m", "paysaga.cli"]
        worker = spawn(stack, [*cli, "worker"], env, root / "worker.log")
        api = spawn(stack, [*cli, "api"], env, root / "api.log")
        api_url = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api_url}/readyz", children={"worker": worker, "api": api})
        yield Stack(root, env, url, f"127.0.0.1:{port}", f"{api_url}/api/v1", worker, api)
