"""The shapes request fields share: names, skus, currencies, amounts."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints


def storable(value: str) -> str:
    """Text the database can hold: no lone surrogates (they cannot be UTF-8), no NUL, no
    control characters."""
    if not value.isprintable():
        raise ValueError("must be printable text")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(storable)]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=10**15)]
# A vendor's id (`sub` of its tokens, `vendor:{id}` in the audit trail): as `api.auth` mints it.
VendorId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
]
