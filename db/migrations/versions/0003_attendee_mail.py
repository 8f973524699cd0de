"""what attendees receive: the ticket's PDF, stored once; mail notifications, one per event,
and the mail relay's place in the event feed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("pdf", sa.LargeBinary(), nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        # `{kind}:{event's dedupe key}`: one mail per event, whoever relays it and how often.
        sa.Column("dedupe_key", sa.Text(), nullable=False, unique=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("order_id", UUID(), nullable=True, index=True),
        sa.Column("recipient", sa.Text(), nullable=False),
        # Recorded before the first try: every try sends the same Message-ID.
        sa.Column("message_id", sa.Text(), nullable=False, unique=True),
        sa.Column(
            "status",
            sa.Text(),
            sa.CheckConstraint("status IN ('pending', 'sent', 'failed')"),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "feed_cursors",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("txid", sa.Text(), nullable=False),  # an xid8, as text (see db.events)
        sa.Column("event_id", sa.BigInteger(), nullable=False),
    )
    # The relay starts from now: events written before mail existed are not mailed.
    op.execute(
        "INSERT INTO feed_cursors (name, txid, event_id) "
        "VALUES ('mail', pg_current_xact_id()::text, 0)"
    )


def downgrade() -> None:
    op.drop_table("feed_cursors")
    op.drop_table("notifications")
    op.drop_column("tickets", "pdf")
