"""What the confirmation saga hands its activities, and what they answer: plain dataclasses
that cross the Temporal boundary (`activities.confirmation`, `activities.parked_money`)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.confirmation import AuditRecord
from domain.payments import Confirmation


@dataclass(frozen=True)
class ValidateInput:
    confirmation: Confirmation
    attach_order_id: str | None = None  # set when an admin attached the payment to an order


@dataclass(frozen=True)
class Validation:
    """`matched`, or the reconciliation case kind the confirmation needs."""

    outcome: str  # "matched" | CaseKind
    order_id: str | None = None
    payment_id: int | None = None
    reason: str = ""
    expected_amount: int | None = None
    expected_currency: str | None = None
    # Matched to an order that waits for its vendor's acceptance once paid: that window.
    accept_seconds: int | None = None


@dataclass(frozen=True)
class CaseInput:
    confirmation: Confirmation
    validation: Validation
    resolution: str | None = None  # set: record the case as already resolved (recovered)


@dataclass(frozen=True)
class RefundInput:
    confirmation: Confirmation
    order_id: str | None
    admin: str
    reason: str


@dataclass(frozen=True)
class StoreInput:
    confirmation: Confirmation
    order_id: str
    payment_id: int


@dataclass(frozen=True)
class ConfirmedAtOnce:
    """Steps 2, 4 and 5 (with 6 and 8) at once (`confirm_at_once`): `stored` None when the
    confirmation does not match its order (nothing written), False when the order's money is
    another's; `marked` None unless step 5 went through with them."""

    validation: Validation
    stored: bool | None
    marked: MarkedPaid | None = None


@dataclass(frozen=True)
class MarkPaidInput:
    """Step 5 with what follows it when the database takes it all at once: the audit
    entries of step 6 and the ticket of step 8 (`mark_order_paid_and_ticket`)."""

    store: StoreInput
    audit: list[AuditRecord]
    # False for an order that waits for its vendor's acceptance: its ticket comes once
    # accepted (issue 28), not with the payment.
    ticket: bool = True


@dataclass(frozen=True)
class MarkedPaid:
    changed: bool  # this call changed the order (False: a retry found it paid)
    audited: bool  # the audit entries are written (False: the workflow's writer does it)
    ticket_code: str | None  # issued (None: the workflow's ticket step does it)


@dataclass(frozen=True)
class CloseCasesInput:
    provider: str
    transaction_id: str
    resolution: str
