"""The normalised confirmation every gateway adapter produces, and the workflow's vocabulary.

These dataclasses cross the Temporal boundary, so they hold only plain JSON-able values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

PROVIDERS = ("razorpay", "stripe", "standard")


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    REFUNDED = "refunded"


class CaseKind(StrEnum):
    UNMATCHED = "unmatched"
    AMOUNT_MISMATCH = "amount_mismatch"
    ALREADY_PAID = "already_paid"
    LATE_PAYMENT = "late_payment"


class PaymentState(StrEnum):
    """Values of the `PaymentState` search attribute, for operators filtering in the UI."""

    RECEIVED = "received"
    VALIDATED = "validated"
    STORED = "stored"
    PAID = "paid"
    COMPLETED = "completed"
    UNMATCHED = "unmatched"
    AMOUNT_MISMATCH = "amount_mismatch"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Confirmation:
    """A successful payment as a gateway reported it, after its signature was verified."""

    provider: str
    transaction_id: str
    intent_id: str | None
    amount: int
    currency: str
    event_id: str
    event_type: str
    order_id: str | None = None  # an order reference the gateway echoed back, if any


def confirmation_workflow_id(provider: str, transaction_id: str) -> str:
    return f"payment-{provider}-{transaction_id}"


@dataclass(frozen=True)
class AdminRequest:
    """An admin's repair instruction; `request_id` makes a repeated signal act once."""

    request_id: str
    admin: str
    order_id: str | None = None
    note: str | None = None


@dataclass
class ConfirmationOutcome:
    outcome: str  # "paid" | "resolved"
    order_id: str | None = None
    ticket_code: str | None = None
    cases: list[str] = field(default_factory=list)
