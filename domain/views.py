"""What customers and operators read: an order, its payments, ticket and refund, the
reconciliation cases, the audit trail and the event log, and one payment as `paysaga admin
show` reports it.

One set of models for the HTTP answers (their `response_model`, so `/openapi.json` documents
every body) and for the admin CLI, which prints the same JSON and renders the same fields.
The query functions in `db/` build them; nothing here reads the database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from domain.confirmation import AdminDecision, ConfirmationState
from domain.statuses import (
    CaseState,
    FulfilmentStatus,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
)


def _iso(value: datetime) -> str:
    return value.isoformat()


# As the answers always wrote them (`+00:00`, not pydantic's `Z`), for consumers that compare.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class View(BaseModel):
    """Read-only answers: built once by a query function, never changed after. The schema
    says what every answer holds: each field (one with a default too, unless it is left out
    when empty), and no other."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


# --- an order -----------------------------------------------------------------------------


class ItemView(View):
    sku: str
    name: str
    quantity: int
    unit_amount: int  # minor units, in the order's currency


class AttendeeView(View):
    name: str | None
    email: str | None


class PaymentView(View):
    """One payment attempt of an order."""

    provider: str
    intent_id: str
    transaction_id: str | None  # the gateway's, once money arrived
    status: PaymentStatus
    amount: int
    currency: str
    checkout_url: str | None
    created_at: Timestamp


class CheckoutPaymentView(PaymentView):
    """The attempt as `POST /orders` answers it: with the browser's key to pay it online
    (Stripe's client secret), shown in this answer only and left out when there is none."""

    client_secret: str | None = Field(default=None, exclude_if=lambda secret: secret is None)


class TicketView(View):
    code: str
    url: str  # the PDF (owner or admin)
    issued_at: Timestamp


class RefundView(View):
    status: RefundStatus
    amount: int
    currency: str
    reason: str | None
    requested_by: str
    requested_at: Timestamp
    completed_at: Timestamp | None


class OrderView(View):
    """An order as its owner and the admins read it."""

    id: uuid.UUID
    customer_id: str
    status: OrderStatus
    amount: int
    currency: str
    items: list[ItemView]
    attendee: AttendeeView | None
    payment: PaymentView | None  # the latest attempt
    payments: list[PaymentView]  # every attempt, oldest first
    ticket: TicketView | None  # once paid
    created_at: Timestamp
    expires_at: Timestamp
    paid_at: Timestamp | None
    cancelled_at: Timestamp | None
    cancel_reason: str | None
    refund: RefundView | None
    # SEQ-BP-002: the one vendor of its products (None: the organizer's own), and, for an
    # order that needs the vendor's acceptance, where that stands once paid (else None):
    # pending until `accept_by`, then accepted or rejected (`reject_reason`: the vendor's,
    # or `timeout`), a rejection refunding the order in full.
    vendor: str | None
    fulfilment: FulfilmentStatus | None
    accept_by: Timestamp | None
    reject_reason: str | None

    def with_client_secret(self, client_secret: str | None) -> PlacedOrderView:
        """The answer to a checkout (`POST /orders`, or a new attempt): this order, its payment
        with the browser's key."""
        payment = None
        if self.payment is not None:
            payment = CheckoutPaymentView(**self.payment.model_dump(), client_secret=client_secret)
        return PlacedOrderView(**(dict(self) | {"payment": payment}))


class PlacedOrderView(OrderView):
    payment: CheckoutPaymentView | None


class VendorOrderPage(View):
    """A vendor's orders, newest first (`GET /vendor/orders`)."""

    orders: list[OrderView]
    next: str | None  # pass back as `after` for the older ones; None: no more


# --- operators ----------------------------------------------------------------------------


class CaseView(View):
    """A reconciliation case: money that could not be applied as it came, until resolved."""

    id: int
    kind: str
    provider: str
    transaction_id: str
    order_id: uuid.UUID | None
    amount: int
    currency: str
    opened_at: Timestamp
    state: CaseState
    reason: str | None
    resolution: str | None
    resolved_at: Timestamp | None


class StoredPaymentView(View):
    """A payment row by its gateway key, as `paysaga admin show` reports it."""

    id: int
    provider: str
    transaction_id: str | None
    intent_id: str
    order_id: uuid.UUID
    status: PaymentStatus
    amount: int
    currency: str
    created_at: Timestamp
    confirmed_at: Timestamp | None


class PaymentDetails(View):
    """One payment by its gateway key: its row, its order and every case it opened."""

    payment: StoredPaymentView | None
    order: OrderView | None
    cases: list[CaseView]


class WorkflowView(View):
    """The confirmation workflow as Temporal has it: `status` is the execution status in lower
    case (`running`, `completed`, ...), `not_found`, or `unreachable` (Temporal did not answer
    in time); `state` is its `state` query's answer when it gave one, else `error` says why."""

    id: str
    status: str = "unreachable"
    started_at: Timestamp | None = None
    closed_at: Timestamp | None = None
    state: ConfirmationState | None = None
    error: str | None = None


class PaymentReport(PaymentDetails):
    """`paysaga admin show`: the database's side and the workflow's side of one payment."""

    provider: str
    transaction_id: str
    workflow: WorkflowView


class ActionAnswer(View):
    """What the workflow did with an admin's action (the API's 202 and the CLI's line)."""

    status: str  # "accepted", or "repeated" for a request id that acted before
    workflow_id: str
    action: str
    request_id: str
    state: str

    @classmethod
    def of(cls, decision: AdminDecision) -> ActionAnswer:
        return cls.model_validate(decision.view())


class AuditEntryView(View):
    id: int
    actor: str
    action: str
    detail: dict[str, Any]
    created_at: Timestamp


# --- the event log ------------------------------------------------------------------------


class EventView(View):
    id: int  # stable: a consumer that sees one twice de-duplicates by it
    type: str
    order_id: uuid.UUID | None
    data: dict[str, Any]
    occurred_at: Timestamp


class EventPage(View):
    events: list[EventView]
    next: str  # pass back as `after` to go on
