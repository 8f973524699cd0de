"""The FastAPI application (`paysaga api`), built by a factory so tests can inject a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import admin, events, health, orders, webhooks
from api.deps import Deps
from api.errors import install_error_handlers
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
    for router in (orders.router, webhooks.router, admin.router, events.router, health.router):
        app.include_router(router, prefix=PREFIX)
    app.include_router(health.router)  # /healthz and /readyz at the root too, for probes
    return app
