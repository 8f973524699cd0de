"""The paysaga worker: runs workflows and activities (`python worker.py`, `paysaga worker`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from db.session import make_engine, make_sessionmaker
from gateways import Gateways
from observability.logs import configure_logging
from observability.metrics import ESCALATIONS, WORKER_GATEWAYS, serve_worker_metrics
from observability.tracing import temporal_interceptor, tracer_provider
from paysaga.readiness import problems
from paysaga.settings import Settings
from paysaga.temporal import (
    build_worker,
    connect,
    ensure_reconciliation_schedule,
    gateway_metrics,
    mail_config,
    metrics_runtime,
)
from workflows.mail_relay import ensure_mail_relay
from workflows.window_keeper import ensure_window_keeper

log = logging.getLogger("paysaga.worker")


async def run_worker(settings: Settings) -> None:
    engine = make_engine(settings.require_database_url(), pre_ping=False)
    runtime = None
    if settings.worker_metrics_port is not None:
        runtime, sdk_url = metrics_runtime()
        _, port = serve_worker_metrics(
            settings.worker_metrics_host, settings.worker_metrics_port, sdk_url
        )
        log.info("worker metrics at http://%s:%d/metrics", settings.worker_metrics_host, port)
    tracing = tracer_provider("paysaga-worker", os.environ)
    client = await connect(settings, interceptors=temporal_interceptor(tracing), runtime=runtime)
    await refuse_unless_ready(client, engine)
    mail = mail_config(settings)
    sessions = make_sessionmaker(engine)
    metrics = gateway_metrics(settings, sessions, WORKER_GATEWAYS, ESCALATIONS)
    worker = build_worker(
        client,
        sessions,
        settings.task_queue,
        sandboxed=settings.workflow_sandbox,
        mail=mail,
        gateways=Gateways(settings.env, metrics),
    )
    await ensure_reconciliation_schedule(client, settings)
    await ensure_window_keeper(client, settings.task_queue)
    if mail is not None:
        await ensure_mail_relay(client, settings.task_queue)
    else:
        log.warning("PAYSAGA_SMTP_HOST is not set: no mail to attendees")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info(
            "worker polling task queue %s on %s", settings.task_queue, settings.temporal_address
        )
        await stop.wait()
    await engine.dispose()
    if tracing is not None:
        tracing.shutdown()


async def refuse_unless_ready(client: Client, engine: AsyncEngine) -> None:
    """A worker on a namespace without a search attribute, or on a database behind the code,
    would fail workflow by workflow: it does not start, and says what to run."""
    found = await problems(client, make_sessionmaker(engine))
    if found:
        for problem in found:
            log.error("not starting: %s", problem)
        await engine.dispose()
        raise SystemExit("paysaga worker not started: " + "; ".join(found))


def main(settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:  # `python worker.py`; `paysaga worker` did it already
        configure_logging(settings.log_format, "paysaga-worker", secrets=settings.secrets())
    # uvloop: at 60 confirmations/s offered the worker completed 51/s on it, 44/s on asyncio.
    uvloop.run(run_worker(settings))


if __name__ == "__main__":
    main()
