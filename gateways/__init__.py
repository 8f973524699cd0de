"""Payment gateways, one package each, behind one `Gateway` base class (`gateways.registry`).

Verification is written from each gateway's documented scheme; tests sign with the official
SDK helpers, so a drift between the two shows up as a failing test. A new gateway is a package
and one `register` line below.
"""

from __future__ import annotations

from gateways.base import GatewayEvent, MalformedEvent, SignatureError, WebhookAdapter
from gateways.razorpay import Razorpay
from gateways.registry import Gateway, Gateways, gateway_for, register
from gateways.standard import Standard
from gateways.stripe import Stripe

register(Razorpay)
register(Stripe)
register(Standard)

__all__ = [
    "Gateway",
    "GatewayEvent",
    "Gateways",
    "MalformedEvent",
    "SignatureError",
    "WebhookAdapter",
    "gateway_for",
]
