"""notifications as an outbox (each mail due on its own, with what it says); escalations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # PostgreSQL named 0003's unnamed check this way.
    op.drop_constraint("notifications_status_check", "notifications", type_="check")
    op.create_check_constraint(
        "notifications_status_check",
        "notifications",
        "status IN ('pending', 'sent', 'failed', 'skipped')",
    )
    op.add_column(
        "notifications",
        sa.Column("data", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column(
        "notifications",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )
    op.add_column(
        "notifications", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "escalations",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("key", sa.Text(), nullable=False, unique=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("detail", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("escalations")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_column("notifications", "claimed_until")
    op.drop_column("notifications", "next_attempt_at")
    op.drop_column("notifications", "data")
    op.execute("UPDATE notifications SET status = 'failed' WHERE status = 'skipped'")
    op.drop_constraint("notifications_status_check", "notifications", type_="check")
    op.create_check_constraint(
        "notifications_status_check", "notifications", "status IN ('pending', 'sent', 'failed')"
    )
