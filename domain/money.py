"""Money is an integer amount in minor units plus an upper-case ISO 4217 code; never a float."""

from __future__ import annotations

import re

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def normalise_currency(code: object) -> str:
    """Upper-cases a currency code and checks its shape (Stripe sends lower case)."""
    if not isinstance(code, str) or not _CURRENCY.match(code.upper()):
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {code!r}")
    return code.upper()


def minor_units(value: object) -> int:
    """An amount in minor units: a non-negative integer, never a float or a bool."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"amount must be a non-negative integer in minor units, got {value!r}")
    return value
