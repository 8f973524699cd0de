"""Money is an integer amount in minor units plus an upper-case ISO 4217 code; never a float."""

from __future__ import annotations

import re

# What PostgreSQL's BIGINT holds; larger amounts could never be stored, so they are refused
# where they arrive instead of failing in the workflow.
BIGINT_MAX = 2**63 - 1
# ASCII letters only: "ßd".upper() is "SSD", and `$` would let "usd\n" through.
_CURRENCY = re.compile(r"[A-Za-z]{3}", re.ASCII)


def normalise_currency(code: object) -> str:
    """Upper-cases a currency code and checks its shape (Stripe sends lower case)."""
    if not isinstance(code, str) or not _CURRENCY.fullmatch(code):
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {code!r}")
    return code.upper()


def minor_units(value: object) -> int:
    """An amount in minor units: a non-negative integer that fits BIGINT; never a float or a
    bool."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"amount must be an integer in minor units, got {type(value).__name__}")
    if not 0 <= value <= BIGINT_MAX:
        # Not the value itself: a 5,000-digit integer has no str() in Python 3.11.
        raise ValueError(f"amount must be from 0 to {BIGINT_MAX} in minor units")
    return value


# ISO 4217 minor-unit exponents that are not 2; every other code has two decimals. A table
# here rather than a dependency: it changes about once a decade.
_EXPONENTS = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
            "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip


def iso_exponent(currency: str) -> int:
    """ISO 4217's minor-unit exponent: 2 for EUR, 0 for JPY, 3 for KWD."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_money(amount: int, currency: str) -> str:
    """An amount for people to read: 49900 INR is "INR 499.00", 1500 JPY "JPY 1,500",
    1234567 KWD "KWD 1,234.567". Integer arithmetic only, so no amount is ever rounded."""
    code = currency.upper()
    exponent = iso_exponent(code)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exponent)
    fraction = f".{minor:0{exponent}d}" if exponent else ""
    return f"{code} {sign}{major:,}{fraction}"
