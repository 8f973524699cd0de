"""What request handlers need: the session factory, a Temporal client, settings, gateways."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, Interceptor

from api.errors import NotFound, Unavailable
from api.security import RejectionLog
from gateways import Gateway, Gateways
from observability.metrics import API_ESCALATIONS, API_GATEWAYS
from paysaga.settings import Settings
from paysaga.temporal import connect, gateway_metrics

log = logging.getLogger("paysaga.api")


@dataclass
class Deps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    _client: Client | None = None
    interceptors: Sequence[Interceptor] = ()
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rejections: RejectionLog = field(init=False)
    # Every gateway, configured once per process, so its API's circuit breaker sees every call.
    gateways: Gateways = field(init=False)

    def __post_init__(self) -> None:
        self.rejections = RejectionLog(self.sessions)
        metrics = gateway_metrics(self.settings, self.sessions, API_GATEWAYS, API_ESCALATIONS)
        self.gateways = Gateways(self.settings.env, metrics)

    async def temporal(self) -> Client:
        """Connects on first use, so the API starts (and says it is not ready) without Temporal."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await connect(
                            self.settings, wait_seconds=0, interceptors=self.interceptors
                        )
                    except RuntimeError as exc:  # the SDK's "failed client connect"
                        raise Unavailable(f"workflow service unreachable: {exc}") from exc
        return self._client

    def gateway(self, provider: str) -> Gateway:
        if provider not in self.gateways:
            raise NotFound(f"no gateway {provider}")
        return self.gateways[provider]


async def get_deps(request: Request) -> Deps:  # async: no thread-pool hop per request
    deps: Deps = request.app.state.deps
    return deps
