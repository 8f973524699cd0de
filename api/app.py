"""The FastAPI application (`paysaga api`), built by a factory so tests can inject a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import admin, events, health, orders, webhooks
from api.deps import Deps
from api.errors import documented, install_error_handlers
from api.limits import BodyLimit
from db.session import make_engine, make_sessionmaker
from paysaga.settings import Settings

PREFIX = "/api/v1"


def create_app(settings: Settings, *, temporal: Client | None = None) -> FastAPI:
    engine = make_engine(settings.require_database_url())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(
        title="paysaga",
        summary="Payment confirmations to exactly-once order status changes, on Temporal.",
        lifespan=lifespan,
    )
    app.state.deps = Deps(settings=settings, sessions=make_sessionmaker(engine), _client=temporal)
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    for router, errors in (
        (orders.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (webhooks.router, documented(400, 401, 413, 415, 503)),
        (admin.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (events.router, documented(400, 401, 403, 413, 503)),
        (health.router, documented(413, 503)),
    ):
        app.include_router(router, prefix=PREFIX, responses=errors)
    app.include_router(health.router)  # /healthz and /readyz at the root too, for probes
    return app
