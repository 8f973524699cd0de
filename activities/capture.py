"""The confirmation saga's capture step: an authorization that matched an order awaiting
payment is captured through its gateway's API before it is stored (Razorpay's
`payment.authorized`, or a checkout return for an authorized payment).

A refusal (a 4xx other than "already captured", which the API adapter counts as done) is no
error a retry mends: it is raised as the non-retryable `CaptureRefused`, and the saga opens a
`capture_refused` case with the order left unpaid. A gateway that is down or rate limited is
raised as it is, and the step's own retry policy (`workflows.confirmation_capture`) waits it
out.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.payments import CAPTURE_REFUSED, Confirmation
from gateways import Gateways
from gateways.api import Capturing, GatewayRefused


class CaptureActivities:
    def __init__(self, gateways: Gateways | None = None) -> None:
        self.gateways = gateways  # online mode: the gateways with an API

    @activity.defn
    async def capture_payment(self, c: Confirmation) -> None:
        gateway = self.gateways.get(c.provider) if self.gateways else None
        api = gateway.api if gateway is not None else None
        if not isinstance(api, Capturing):
            # An authorization reaches the saga only where the API process is online; a
            # worker without the keys cannot capture, and says so in the case.
            raise ApplicationError(
                f"{c.provider}: no API keys on the worker to capture the authorization",
                type=CAPTURE_REFUSED,
                non_retryable=True,
            )
        try:
            await api.capture(c.transaction_id, c.amount, c.currency)
        except GatewayRefused as exc:
            raise ApplicationError(
                f"{c.provider} refused the capture: {exc}"[:500],
                type=CAPTURE_REFUSED,
                non_retryable=True,
            ) from exc
        activity.logger.info(
            "captured %s %s: %d %s", c.provider, c.transaction_id, c.amount, c.currency
        )

    def all(self) -> list[Any]:
        return [self.capture_payment]
