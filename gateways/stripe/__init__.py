"""Stripe: webhooks (`webhooks`), its API for PaymentIntents, look-ups and refunds (`api`), and
the checkout return (`checkout`). Settings: `PAYSAGA_STRIPE_WEBHOOK_SECRETS`,
`PAYSAGA_STRIPE_API_KEY`, `PAYSAGA_STRIPE_API_BASE` (a local Stripe emulator in tests)."""

from __future__ import annotations

from collections.abc import Mapping

from gateways.api import NO_METRICS, GatewayMetrics
from gateways.registry import Gateway, env_text
from gateways.stripe.api import StripeApi
from gateways.stripe.checkout import StripeReturn
from gateways.stripe.webhooks import StripeWebhooks

LIVE_KEYS = ("sk_live_", "rk_live_")


class Stripe(Gateway):
    name = "stripe"
    adapter = StripeWebhooks

    def __init__(self, env: Mapping[str, str], metrics: GatewayMetrics = NO_METRICS) -> None:
        self.api_key = env_text(env, "PAYSAGA_STRIPE_API_KEY")
        super().__init__(env, metrics)
        base = env_text(env, "PAYSAGA_STRIPE_API_BASE")
        api = StripeApi(self.api_key, base, metrics=metrics) if self.api_key else None
        self.api, self.checkout = api, StripeReturn(api)

    def livemode(self) -> bool | None:
        return None if not self.api_key else self.api_key.startswith(LIVE_KEYS)

    def secrets(self) -> tuple[str, ...]:
        return (*super().secrets(), *([self.api_key] if self.api_key else []))
