"""The order lifecycle's vocabulary: what `order-{order_id}` is started with and reports.

Crosses the Temporal boundary (plain values only; no `from __future__ import annotations`, see
`domain.payments`)."""

from dataclasses import dataclass
from enum import StrEnum


class OrderState(StrEnum):
    """Values of the `OrderState` search attribute, for operators filtering in the UI."""

    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"  # paid and placed (`OrderPaid`, then `OrderPlaced`)
    EXPIRED = "expired"  # the payment window closed: cancelled, stock released
    CANCELLED = "cancelled"  # by the customer or an admin


@dataclass(frozen=True)
class OrderRun:
    order_id: str
    expires_at: str  # ISO 8601 with offset, from the order row: the window is the row's


@dataclass(frozen=True)
class OrderClosed:
    """Sent by the API after its cancel committed, so the workflow ends before its timer."""

    reason: str  # "customer" | "admin"


@dataclass(frozen=True)
class CloseResult:
    changed: bool
    status: str | None  # the order's status after the attempt (None: no such order)
    reason: str | None = None  # why it is cancelled, if it is (a retried expiry: "timeout")
