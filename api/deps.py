"""What request handlers need: the session factory, a Temporal client, settings, gateways."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, Interceptor

from api.errors import Unavailable
from api.security import RejectionLog
from gateways import Gateway, gateway_for
from gateways.razorpay_api import RazorpayApi
from gateways.stripe_api import StripeApi
from paysaga.settings import Settings
from paysaga.temporal import connect

LIVE_KEYS = ("sk_live_", "rk_live_")


@dataclass
class Deps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    _client: Client | None = None
    interceptors: Sequence[Interceptor] = ()
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rejections: RejectionLog = field(init=False)
    # Online mode for Stripe (PAYSAGA_STRIPE_API_KEY): intents at checkout, verify; None
    # offline. One per process, so its circuit breaker sees every call.
    stripe_api: StripeApi | None = field(init=False)
    razorpay_api: RazorpayApi | None = field(init=False)

    def __post_init__(self) -> None:
        self.rejections = RejectionLog(self.sessions)
        s = self.settings
        self.stripe_api = (
            StripeApi(s.stripe_api_key, s.stripe_api_base) if s.stripe_api_key else None
        )
        self.razorpay_api = (
            RazorpayApi(s.razorpay_key_id, s.razorpay_key_secret, s.razorpay_api_base)
            if s.razorpay_key_id and s.razorpay_key_secret
            else None
        )

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
        s = self.settings
        secrets = {
            "razorpay": s.razorpay_webhook_secrets,
            "stripe": s.stripe_webhook_secrets,
            "standard": s.standard_webhook_secrets,
        }[provider]
        key = s.stripe_api_key
        livemode = None if provider != "stripe" or not key else key.startswith(LIVE_KEYS)
        return gateway_for(provider, secrets, livemode)


async def get_deps(request: Request) -> Deps:  # async: no thread-pool hop per request
    deps: Deps = request.app.state.deps
    return deps
