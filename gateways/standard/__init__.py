"""Standard Webhooks (standardwebhooks.com): any sender that signs as the specification says.
Webhooks only, no API: settings `PAYSAGA_STANDARD_WEBHOOK_SECRETS` (`whsec_...`)."""

from __future__ import annotations

from gateways.registry import Gateway
from gateways.standard.webhooks import StandardWebhooks


class Standard(Gateway):
    name = "standard"
    adapter = StandardWebhooks
