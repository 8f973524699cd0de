"""What the confirmation workflow is told, and reads, about a vendor's acceptance of its order
(SEQ-BP-002): the `fulfilment` signal's payload and the database's word when no signal came.

Crosses the Temporal boundary (plain values only; no `from __future__ import annotations`, see
`domain.payments`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class VendorAnswer:
    """Sent, best effort, by whoever decided (the vendor's route, the window) after the
    decision committed: `accepted` or `rejected`."""

    order_id: str
    fulfilment: str
    actor: str
    reason: str | None = None


@dataclass(frozen=True)
class FulfilmentSeen:
    """The order's acceptance as its row has it: the workflow's fallback for a lost signal."""

    fulfilment: str | None
    accept_by: str | None  # ISO 8601 with offset
