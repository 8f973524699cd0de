"""Gateway adapters: verify each gateway's own signature scheme and normalise its events.

Verification is written from each gateway's documented scheme; tests sign with the official
SDK helpers, so a drift between the two shows up as a failing test.
"""

from __future__ import annotations

from gateways.base import Gateway, GatewayEvent, MalformedEvent, SignatureError
from gateways.razorpay import RazorpayGateway
from gateways.standard import StandardWebhooksGateway
from gateways.stripe import StripeGateway

__all__ = [
    "Gateway",
    "GatewayEvent",
    "MalformedEvent",
    "RazorpayGateway",
    "SignatureError",
    "StandardWebhooksGateway",
    "StripeGateway",
    "gateway_for",
]


def gateway_for(provider: str, secrets: tuple[str, ...], livemode: bool | None = None) -> Gateway:
    gateways: dict[str, type[Gateway]] = {
        "razorpay": RazorpayGateway,
        "stripe": StripeGateway,
        "standard": StandardWebhooksGateway,
    }
    return gateways[provider](secrets, livemode)
