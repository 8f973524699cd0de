"""order lifecycle: payment window, cancellation, stock totals, an ordered event feed;
security events counted per source and minute

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# One statement per execute (asyncpg prepares each).
BACKFILL = (
    # Orders made before the lifecycle: their window starts from when they were made.
    "UPDATE orders SET expires_at = created_at + interval '900 seconds'",
    # Their lifecycle workflow is started by the next reconciliation run if still unpaid.
    "UPDATE orders SET lifecycle_started = (status <> 'awaiting_payment')",
    # Orders paid before lifecycles existed were placed by being paid: their OrderPlaced, once
    # (the key is the one the lifecycle writes).
    """INSERT INTO events (type, order_id, payload, dedupe_key)
       SELECT 'OrderPlaced', id, '{"backfilled": true}'::jsonb, 'OrderPlaced:' || id::text
       FROM orders WHERE status = 'paid'
       ON CONFLICT (dedupe_key) DO NOTHING""",
    # What a product was stocked with: what is left plus what live orders hold.
    """UPDATE products p SET total_stock = p.stock + coalesce((
         SELECT sum(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id
         WHERE i.sku = p.sku AND o.status IN ('awaiting_payment', 'paid')), 0)""",
)


def upgrade() -> None:
    op.add_column("orders", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("cancel_reason", sa.Text(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("lifecycle_started", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("products", sa.Column("total_stock", sa.Integer(), nullable=True))
    for statement in BACKFILL:
        op.execute(statement)
    op.alter_column("orders", "expires_at", nullable=False)
    op.alter_column("products", "total_stock", nullable=False)
    op.create_check_constraint("ck_products_total_stock", "products", "total_stock >= stock")
    op.create_check_constraint(
        "ck_orders_cancel_reason",
        "orders",
        "cancel_reason IS NULL OR cancel_reason IN ('timeout', 'customer', 'admin')",
    )
    op.create_index(
        "ix_orders_unstarted",
        "orders",
        ["created_at"],
        postgresql_where=sa.text("NOT lifecycle_started"),
    )
    # The feed's order: by writing transaction, then id. A reader is only shown transactions
    # older than every one still open, so a late commit can never land behind its cursor.
    op.execute("ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.create_index("ix_events_txid_id", "events", ["txid", "id"])
    # A flood of bad signatures is one row per provider, source and minute, with a count.
    op.add_column(
        "security_events",
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "security_events",
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column("security_events", "last_seen_at")
    op.drop_column("security_events", "count")
    op.drop_index("ix_events_txid_id", table_name="events")
    op.drop_column("events", "txid")
    op.drop_index("ix_orders_unstarted", table_name="orders")
    op.drop_constraint("ck_orders_cancel_reason", "orders")
    op.drop_constraint("ck_products_total_stock", "products")
    op.drop_column("products", "total_stock")
    op.drop_column("orders", "lifecycle_started")
    op.drop_column("orders", "cancel_reason")
    op.drop_column("orders", "cancelled_at")
    op.drop_column("orders", "expires_at")
