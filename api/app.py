"""The FastAPI application (`paysaga api`), built by a factory so tests can inject a client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client

from api import (
    admin,
    events,
    health,
    orders,
    payments,
    products,
    vendor,
    vendor_page,
    vendor_stream,
    webhooks,
)
from api.deps import Deps
from api.errors import documented, install_error_handlers
from api.limits import BodyLimit
from api.timing import RequestTimer
from api.vendor_feed import StreamConfig, VendorFeed
from db.session import make_engine, make_sessionmaker
from observability.tracing import temporal_interceptor, tracer_provider
from paysaga.settings import Settings

PREFIX = "/api/v1"


def create_app(
    settings: Settings,
    *,
    temporal: Client | None = None,
    tracing: TracerProvider | None = None,
) -> FastAPI:
    """`temporal`: a client to use (tests); otherwise one is connected on first use, with the
    tracing interceptor when traces are on. `tracing`: the tracer provider (tests); otherwise
    one from OTEL_EXPORTER_OTLP_ENDPOINT, or none."""
    engine = make_engine(settings.require_database_url())
    owned = None  # a provider made here is shut down here; a caller's is the caller's
    if tracing is None and temporal is None:
        tracing = owned = tracer_provider("paysaga-api", os.environ)

    sessions = make_sessionmaker(engine)
    # The vendors' live streams: this process's follower of the event feed.
    feed = VendorFeed(
        sessions, settings.require_database_url(), StreamConfig.from_env(settings.env)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        yield
        await feed.stop()
        await engine.dispose()
        if owned is not None:
            owned.shutdown()  # exports what is still buffered

    app = FastAPI(
        title="paysaga",
        summary="Payment confirmations to exactly-once order status changes, on Temporal.",
        lifespan=lifespan,
    )
    app.state.deps = deps = Deps(
        settings=settings,
        sessions=sessions,
        _client=temporal,
        interceptors=temporal_interceptor(tracing),
    )
    app.state.vendor_feed = feed
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestTimer)  # outermost: it times the 401s and 413s at the edge too
    _routes(app, deps)
    if tracing is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=tracing)
    return app


def _routes(app: FastAPI, deps: Deps) -> None:
    for router, errors in (
        (products.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (orders.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (payments.routes(deps.gateways), documented(400, 401, 404, 409, 413, 503)),
        (webhooks.routes(deps.gateways), documented(400, 401, 413, 415, 503)),
        (admin.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (events.router, documented(400, 401, 403, 413, 503)),
        (vendor.router, documented(400, 401, 403, 404, 409, 413, 503)),
        (health.router, documented(413, 503)),
        (vendor_stream.router, {}),
        (vendor_page.router, {}),
    ):
        app.include_router(router, prefix=PREFIX, responses=errors)
    app.include_router(vendor_page.root)  # /vendor: the page's short address
    app.include_router(health.router)  # /healthz, /readyz, /metrics at the root too, for probes
