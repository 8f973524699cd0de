"""Tables. Money is `BigInteger` minor units plus a 3-letter currency; never a float.

The guards that outlive any workflow's retention live here as constraints: one payment per
(provider, transaction_id), at most one `paid` payment per order, one ticket per order,
and natural dedupe keys on the audit trail and the event log.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.statuses import CaseState, NotificationStatus


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _currency() -> Mapped[str]:
    return mapped_column(String(3), CheckConstraint("currency ~ '^[A-Z]{3}$'"), nullable=False)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sku: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    unit_amount: Mapped[int] = mapped_column(BigInteger, CheckConstraint("unit_amount >= 0"))
    currency: Mapped[str] = _currency()
    stock: Mapped[int] = mapped_column(Integer, CheckConstraint("stock >= 0"))
    # What the product was stocked with: stock + what live (awaiting or paid) orders hold.
    total_stock: Mapped[int] = mapped_column(Integer, CheckConstraint("total_stock >= stock"))
    # Units an admin withdrew that live orders still hold: written off (not put back on
    # sale) as those orders are cancelled or refunded (`db.stock`).
    to_withdraw: Mapped[int] = mapped_column(
        Integer, CheckConstraint("to_withdraw >= 0"), server_default=text("0")
    )
    # The vendor whose tokens see and answer this product's orders (None: the organizer's
    # own), and whether a paid order of it waits for that vendor's acceptance.
    vendor: Mapped[str | None] = mapped_column(Text)
    requires_acceptance: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    created_at: Mapped[datetime] = _now()


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index(
            "ix_orders_window", "expires_at", postgresql_where=text("status = 'awaiting_payment'")
        ),
        Index(
            "ix_orders_acceptance",
            "accept_by",
            postgresql_where=text("fulfilment = 'pending_vendor_acceptance'"),
        ),
        Index("ix_orders_vendor", "vendor", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[str] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(
        Text,
        CheckConstraint("status IN ('awaiting_payment', 'paid', 'refunded', 'cancelled')"),
    )
    amount: Mapped[int] = mapped_column(BigInteger, CheckConstraint("amount >= 0"))
    currency: Mapped[str] = _currency()
    attendee_name: Mapped[str | None] = mapped_column(Text)
    attendee_email: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The payment window: past it an unpaid order is cancelled by the window keeper
    # (`ix_orders_window` finds the due ones).
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(
        Text,
        CheckConstraint(
            "cancel_reason IS NULL OR cancel_reason IN "
            "('timeout', 'customer', 'admin', 'checkout_failed')"
        ),
    )
    # SEQ-BP-002's vendor acceptance (`db.fulfilment`). `vendor`: the one vendor of the
    # order's products. `accept_seconds`: set when placed if a product needs acceptance, the
    # time the vendor will have once it is paid (None: no acceptance). Paid, it is
    # `pending_vendor_acceptance` until `accept_by` (`ix_orders_acceptance` finds the due
    # ones), then `accepted` or `rejected` with its reason (`timeout`: the window ended).
    vendor: Mapped[str | None] = mapped_column(Text)
    accept_seconds: Mapped[int | None] = mapped_column(
        Integer, CheckConstraint("accept_seconds >= 0", name="ck_orders_accept_seconds")
    )
    fulfilment: Mapped[str | None] = mapped_column(
        Text,
        CheckConstraint(
            "fulfilment IN ('pending_vendor_acceptance', 'accepted', 'rejected')",
            name="ck_orders_fulfilment",
        ),
    )
    accept_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    # Set once `order-{id}` is started; the reconciliation sweep starts any left unstarted.
    lifecycle_started: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )


class OrderItem(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer, CheckConstraint("quantity > 0"))
    unit_amount: Mapped[int] = mapped_column(BigInteger)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "transaction_id", name="uq_payments_provider_transaction"),
        UniqueConstraint("provider", "intent_id", name="uq_payments_provider_intent"),
        # Never confirm twice: the database refuses a second paid payment for one order.
        Index(
            "uq_payments_one_paid_per_order",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'paid'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    provider: Mapped[str] = mapped_column(Text)
    intent_id: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        Text,
        CheckConstraint(
            "status IN ('pending', 'paid', 'failed', 'cancelled', 'timeout', 'refunded')"
        ),
    )
    amount: Mapped[int] = mapped_column(BigInteger, CheckConstraint("amount >= 0"))
    currency: Mapped[str] = _currency()
    created_at: Mapped[datetime] = _now()
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Append-only (a trigger refuses UPDATE and DELETE); `dedupe_key` makes a retry write once."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = _now()


class SecurityEvent(Base):
    """Rejected confirmations (2a): bad signatures at the edge, amount mismatches behind it."""

    __tablename__ = "security_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    dedupe_key: Mapped[str | None] = mapped_column(Text, unique=True)
    # Bad signatures are aggregated: one row per provider, source and minute (api/security.py).
    count: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()


class ReconciliationCase(Base):
    """Money that moved but could not be applied: kept for an admin, never dropped."""

    __tablename__ = "reconciliation_cases"
    __table_args__ = (
        UniqueConstraint("provider", "transaction_id", "kind", name="uq_cases_provider_tx_kind"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = _currency()
    state: Mapped[str] = mapped_column(
        Text, CheckConstraint("state IN ('open', 'resolved')"), server_default=CaseState.OPEN.value
    )
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    resolution: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    code: Mapped[str] = mapped_column(Text, unique=True)
    issued_at: Mapped[datetime] = _now()
    # The ticket as a PDF, rendered once (`db.tickets.ticket_pdf`); deferred: views of the
    # order need the code, not the document.
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Notification(Base):
    """One mail, the outbox's unit of work: written once per (kind, event or escalation) with
    its Message-ID and what it says (`data`), sent by whichever sender claims it when it is
    due (`activities.mail_senders`), retried on its own, and `sent` or `failed` at the end."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    recipient: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(
        Text,
        CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'skipped')",
            name="notifications_status_check",
        ),
        server_default=NotificationStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    next_attempt_at: Mapped[datetime] = _now()  # not before: a deferred mail's backoff
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a sender's


class Escalation(Base):
    """Something a person must act on, recorded once by its key (`db.escalations`): what
    happened and the command that acts on it; each admin address gets one mail of it."""

    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    created_at: Mapped[datetime] = _now()


class FeedCursor(Base):
    """How far a reader of the event feed got (`mail`: the mail relay), as `db.events.Cursor`."""

    __tablename__ = "feed_cursors"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    txid: Mapped[str] = mapped_column(Text)
    event_id: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """The event log (an outbox) read through `GET /events?after=`. It also has a `txid xid8`
    column (the writing transaction, a server default, not mapped here): the feed is ordered
    by (txid, id) and shows only transactions older than every open one (`db.events`)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = _now()


class Refund(Base):
    """Money sent back for a payment: full refunds only, one per payment (`db.refunds`)."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider", "transaction_id", name="uq_refunds_provider_transaction"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str] = mapped_column(Text)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, CheckConstraint("amount >= 0"))
    currency: Mapped[str] = _currency()
    status: Mapped[str] = mapped_column(
        Text, CheckConstraint("status IN ('pending', 'succeeded', 'failed')")
    )
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    gateway_refund_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
