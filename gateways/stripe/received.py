"""What a PaymentIntent received, read the same way from a webhook and from the API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def received_field(intent: Mapping[str, Any]) -> str | None:
    """The field that holds what was actually captured, not what was asked for. Stripe always
    sends `amount_received`; the localstripe emulator (the tests' Stripe) does not, and then a
    succeeded intent received its `amount`. None: it says nothing of what it received."""
    if intent.get("amount_received") is not None:
        return "amount_received"
    if intent.get("status") == "succeeded":
        return "amount"
    return None
