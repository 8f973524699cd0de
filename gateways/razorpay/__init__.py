"""Razorpay: webhooks (`webhooks`), its API for orders, look-ups and refunds (`api`), and the
checkout return's signature (`checkout`). Settings: `PAYSAGA_RAZORPAY_WEBHOOK_SECRETS`,
`PAYSAGA_RAZORPAY_KEY_ID`, `PAYSAGA_RAZORPAY_KEY_SECRET` (also verifies checkout returns),
`PAYSAGA_RAZORPAY_API_BASE`."""

from __future__ import annotations

from collections.abc import Mapping

from gateways.api import NO_METRICS, GatewayMetrics
from gateways.razorpay.api import RazorpayApi
from gateways.razorpay.checkout import RazorpayReturn
from gateways.razorpay.webhooks import RazorpayWebhooks
from gateways.registry import Gateway, env_text


class Razorpay(Gateway):
    name = "razorpay"
    adapter = RazorpayWebhooks

    def __init__(self, env: Mapping[str, str], metrics: GatewayMetrics = NO_METRICS) -> None:
        super().__init__(env, metrics)
        key_id = env_text(env, "PAYSAGA_RAZORPAY_KEY_ID")
        self.key_secret = env_text(env, "PAYSAGA_RAZORPAY_KEY_SECRET")
        api = None
        if key_id and self.key_secret:
            api = RazorpayApi(
                key_id, self.key_secret, env_text(env, "PAYSAGA_RAZORPAY_API_BASE"), metrics
            )
            self.api = api
        # Online, an authorization (webhook or checkout return) is captured through the API.
        assert isinstance(self.webhooks, RazorpayWebhooks)
        self.webhooks.captures = api is not None
        # The key secret alone verifies a checkout return's signature; the API looks the
        # payment up, to capture it or to see it captured.
        self.checkout = RazorpayReturn(self.key_secret, api)

    def secrets(self) -> tuple[str, ...]:
        return (*super().secrets(), *([self.key_secret] if self.key_secret else []))
