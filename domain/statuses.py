"""Every status paysaga stores or answers with, one enum each (CONTRACT.md "Statuses").

A status is written as a member here and nowhere as a bare string: `tests/test_layout.py`
fails on a status literal in product code outside `domain/` and the gateway packages (which
speak their gateway's own words, e.g. Stripe's `succeeded` intent). They are `StrEnum`s, so a
member is its value wherever a string goes (rows, JSON, search attributes, histories).

Crosses the Temporal boundary (plain values only; no `from __future__ import annotations`, see
`domain.payments`).
"""

from enum import StrEnum


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class PaymentStatus(StrEnum):
    """One payment attempt of an order."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    REFUNDED = "refunded"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # opens a `refund_failed` case


class CaseState(StrEnum):
    """A reconciliation case."""

    OPEN = "open"
    RESOLVED = "resolved"


class FulfilmentStatus(StrEnum):
    """SEQ-BP-002's vendor acceptance of a paid order (None where no product needs it)."""

    PENDING_VENDOR_ACCEPTANCE = "pending_vendor_acceptance"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


# A rejection's reason when the vendor's window ended unanswered (else the vendor's words).
VENDOR_TIMEOUT = "timeout"


class NotificationStatus(StrEnum):
    """A mail in the outbox: `failed` was given up (refused for good, or deferred past its
    limit); `skipped` was no longer true when its turn came."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class CancelReason(StrEnum):
    """Why an order was cancelled: its window closed, or who cancelled it; or, online, the
    gateway could not make the checkout's intent, so the stock reserved for it went back
    (the customer was answered 503 and never saw the order)."""

    TIMEOUT = "timeout"
    CUSTOMER = "customer"
    ADMIN = "admin"
    CHECKOUT_FAILED = "checkout_failed"


class WebhookResult(StrEnum):
    """What became of a webhook: the answer's `result` (the first three) and the
    `paysaga_webhooks_total{result}` label (all five)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"  # refused with a 4xx
    ERROR = "error"  # a 5xx
