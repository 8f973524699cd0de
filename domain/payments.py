"""The normalised confirmation every gateway adapter produces, and the workflow's vocabulary.

These dataclasses cross the Temporal boundary, so they hold only plain JSON-able values. No
`from __future__ import annotations` here: the SDK reads a dataclass's type hints for every
payload it decodes (each admin signal), and string annotations are compiled on every read.
"""

import re
from dataclasses import dataclass, field
from enum import StrEnum


class CaseKind(StrEnum):
    UNMATCHED = "unmatched"
    AMOUNT_MISMATCH = "amount_mismatch"
    ALREADY_PAID = "already_paid"
    LATE_PAYMENT = "late_payment"
    STORE_FAILED = "store_failed"  # 4a: the payment could not be written for a whole first phase
    STATUS_UPDATE_FAILED = "status_update_failed"  # 5a: stored, but the order not yet marked paid
    UNPROCESSABLE = "unprocessable"  # the database refuses the confirmation's data itself
    REFUND_FAILED = "refund_failed"  # the gateway refused or failed a refund, or never answered
    # An authorization (Razorpay `payment.authorized`) for no order awaiting payment: left
    # uncaptured, so the gateway voids it; no money was taken.
    UNCAPTURED = "authorization_uncaptured"
    CAPTURE_REFUSED = "capture_refused"  # the gateway refused to capture an authorization


# Parked authorizations: nothing was captured, so there is nothing to refund.
NOT_CAPTURED = (CaseKind.UNCAPTURED, CaseKind.CAPTURE_REFUSED)


# Errors no retry mends, raised by activities as non-retryable ApplicationError types.
NOT_PAYABLE = "OrderNotPayable"  # the order is cancelled (or refunded): it cannot become paid
UNPROCESSABLE = "Unprocessable"  # the database refuses the data itself, not its state
CAPTURE_REFUSED = "CaptureRefused"  # the gateway answered no to a capture (a 4xx)


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
    REFUND_PENDING = "refund_pending"  # parked money an admin refunds; the gateway is to answer
    REFUNDED = "refunded"


@dataclass(frozen=True)
class RecoveryTiming:
    """How the confirmation waits out a failing database (4a, 5a, 6a, 8a), in seconds.

    First phase: the activity's own retry policy, fast backoff up to `fast_max`, for
    `first_phase` seconds. Then the workflow marks itself `needs_reconciliation`, opens a case
    (best effort) and keeps trying every `slow_initial`..`slow_max` seconds, or at once on a
    `retry`. Part of the workflow's input, so a run keeps the timing it started with.
    """

    first_phase: float = 300.0
    fast_max: float = 10.0
    slow_initial: float = 30.0
    slow_max: float = 300.0


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
    # When the webhook arrived (epoch seconds), for `paysaga_confirmation_seconds`; None in
    # histories recorded before it was carried.
    received_at: float | None = None
    # The gateway holds an authorization, not money (Razorpay `payment.authorized`, or a
    # checkout return for an authorized payment): the saga captures it once it matches an
    # order awaiting payment, and only then stores it. False in older histories.
    needs_capture: bool = False


@dataclass(frozen=True)
class AttemptEnd:
    """A gateway says a payment attempt ended without money: `failed` (declined; the same
    Stripe PaymentIntent may still succeed later) or `cancelled` (checkout abandoned)."""

    provider: str
    intent_id: str
    status: str  # PaymentStatus.FAILED | PaymentStatus.CANCELLED
    event_id: str
    event_type: str
    reason: str | None = None


@dataclass(frozen=True)
class RefundNotice:
    """A gateway says a refund of a payment ended: `succeeded` (money sent back) or `failed`."""

    provider: str
    transaction_id: str  # the payment's
    refund_id: str  # the gateway's refund reference
    amount: int
    currency: str
    status: str  # "succeeded" | "failed"
    event_id: str
    event_type: str


@dataclass(frozen=True)
class RefundRun:
    """The refund workflow's input: which payment, and who asked (an owner, an admin, or the
    gateway itself when an operator refunded in its dashboard)."""

    provider: str
    transaction_id: str
    requested_by: str
    # Parked money (an admin's refund): once refunded, its parked confirmation is told
    # `refunded` and ends so. A late payment's refund does the same (`requested_by`).
    settles_parked: bool = False


@dataclass(frozen=True)
class RefundAnswer:
    """A gateway's answer, to apply, and who asked for the refund (recorded with it)."""

    notice: RefundNotice
    requested_by: str


LATE_PAYMENT = "system:late_payment"  # who asks for a late payment's refund

# The intent id of a payment row holding money an admin attached from another gateway than
# the order's attempt: the row is no attempt of its own.
ATTACHED = "attached:"


def refund_workflow_id(provider: str, transaction_id: str) -> str:
    return f"refund-{provider}-{transaction_id}"


def order_workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


# Gateways' ids are visible ASCII (pay_..., pi_..., order_...). Anything else (a NUL byte, a
# lone surrogate, a newline) could never be stored, and would only loop in a workflow.
_IDENTIFIER = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def confirmation_workflow_id(provider: str, transaction_id: str) -> str:
    return f"payment-{provider}-{transaction_id}"


@dataclass(frozen=True)
class AdminRequest:
    """An admin's repair instruction. `request_id` makes a repeated attach, refund or resolve
    act once (a repeated retry is harmless and not remembered)."""

    request_id: str
    admin: str
    order_id: str | None = None  # attach
    note: str | None = None  # resolve
    reason: str | None = None  # refund

    def problem(self) -> str | None:
        """Why this request cannot even be recorded (it lands in the audit trail), if so."""
        limits = {"request_id": 200, "admin": 200, "order_id": 100, "note": 2000, "reason": 2000}
        for name, limit in limits.items():
            value = getattr(self, name)
            if value is None and name not in ("request_id", "admin"):
                continue
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                return f"{name} must be text of 1 to {limit} characters"
            if not all(ch.isprintable() or ch in "\n\t" for ch in value):
                return f"{name} must be printable text"
        return None


@dataclass
class ConfirmationOutcome:
    outcome: str  # "paid" | "resolved" | "refunded"
    order_id: str | None = None
    ticket_code: str | None = None
    cases: list[str] = field(default_factory=list)
