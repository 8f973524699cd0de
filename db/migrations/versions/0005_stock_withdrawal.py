"""products.to_withdraw: units an admin took away while live orders held them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "products",
        sa.Column(
            "to_withdraw",
            sa.Integer(),
            sa.CheckConstraint("to_withdraw >= 0", name="ck_products_to_withdraw"),
            server_default="0",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("products", "to_withdraw")
