"""What the confirmation saga hands its activities, and what they answer: plain dataclasses
that cross the Temporal boundary (`activities.confirmation`, `activities.parked_money`)."""

from __future__ import annotations

from dataclasses import dataclass

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
class CloseCasesInput:
    provider: str
    transaction_id: str
    resolution: str
