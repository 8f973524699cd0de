"""vendors and their acceptance of paid orders (SEQ-BP-002's "Pending Vendor Acceptance")

A product may name its vendor and require the vendor's acceptance; an order holds one
vendor's products and carries that vendor. An order that needs acceptance records, when it is
placed, how long the vendor will have (`accept_seconds`, from PAYSAGA_VENDOR_ACCEPT_SECONDS);
once paid it is `pending_vendor_acceptance` until `accept_by`, then `accepted` or `rejected`
(with its reason, `timeout` when the window ended). The window keeper finds due ones through
the partial index; a vendor's list of its orders reads the (vendor, created_at) index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("vendor", sa.Text(), nullable=True))
    op.add_column(
        "products",
        sa.Column(
            "requires_acceptance", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column("orders", sa.Column("vendor", sa.Text(), nullable=True))
    op.add_column(
        "orders",
        sa.Column(
            "accept_seconds",
            sa.Integer(),
            sa.CheckConstraint("accept_seconds >= 0", name="ck_orders_accept_seconds"),
            nullable=True,
        ),
    )
    op.add_column(
        "orders",
        sa.Column(
            "fulfilment",
            sa.Text(),
            sa.CheckConstraint(
                "fulfilment IN ('pending_vendor_acceptance', 'accepted', 'rejected')",
                name="ck_orders_fulfilment",
            ),
            nullable=True,
        ),
    )
    op.add_column("orders", sa.Column("accept_by", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("reject_reason", sa.Text(), nullable=True))
    op.create_index(
        "ix_orders_acceptance",
        "orders",
        ["accept_by"],
        postgresql_where=sa.text("fulfilment = 'pending_vendor_acceptance'"),
    )
    op.create_index("ix_orders_vendor", "orders", ["vendor", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_vendor", table_name="orders")
    op.drop_index("ix_orders_acceptance", table_name="orders")
    for column in ("reject_reason", "accept_by", "fulfilment", "accept_seconds", "vendor"):
        op.drop_column("orders", column)
    op.drop_column("products", "requires_acceptance")
    op.drop_column("products", "vendor")
