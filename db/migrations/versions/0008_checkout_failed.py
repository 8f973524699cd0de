"""an order whose gateway intent could not be made is cancelled as `checkout_failed`

Online checkout reserves the stock before the gateway makes its intent (issue 26 item 2);
when the gateway fails, the order is cancelled with this reason and its stock released.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_orders_cancel_reason", "orders", type_="check")
    op.create_check_constraint(
        "ck_orders_cancel_reason",
        "orders",
        "cancel_reason IS NULL OR cancel_reason IN "
        "('timeout', 'customer', 'admin', 'checkout_failed')",
    )


def downgrade() -> None:
    # An order cancelled so reads as cancelled by the system, as an admin's would.
    op.execute("UPDATE orders SET cancel_reason = 'admin' WHERE cancel_reason = 'checkout_failed'")
    op.drop_constraint("ck_orders_cancel_reason", "orders", type_="check")
    op.create_check_constraint(
        "ck_orders_cancel_reason",
        "orders",
        "cancel_reason IS NULL OR cancel_reason IN ('timeout', 'customer', 'admin')",
    )
