"""payment windows held by the window keeper, not by a workflow per order

An unpaid order is cancelled when its window ends by the window keeper (one long-running
activity per task queue, `workflows.window_keeper`), which finds due orders through this
partial index; `order-{id}` is no longer started for new orders, so the flag the
reconciliation sweep used to start forgotten ones goes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_window",
        "orders",
        ["expires_at"],
        postgresql_where=sa.text("status = 'awaiting_payment'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_window", table_name="orders")
