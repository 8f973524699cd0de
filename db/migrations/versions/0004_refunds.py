"""refunds: one per payment, pending until the gateway confirms it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("order_id", UUID(), nullable=True, index=True),
        sa.Column("amount", sa.BigInteger(), sa.CheckConstraint("amount >= 0"), nullable=False),
        sa.Column(
            "currency", sa.String(3), sa.CheckConstraint("currency ~ '^[A-Z]{3}$'"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Text(),
            sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("gateway_refund_id", sa.Text(), nullable=True),
        sa.Column("detail", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        # Full refunds only: one per payment, so money never goes back twice.
        sa.UniqueConstraint("provider", "transaction_id", name="uq_refunds_provider_transaction"),
    )


def downgrade() -> None:
    op.drop_table("refunds")
