"""a wake-up for the vendors' live stream: NOTIFY when one of its events is written

Every API process follows the event feed for its vendors' connections (`api.vendor_feed`),
woken by `LISTEN paysaga_events` instead of polling. A trigger, not a call in each writer, so
every writer of these events wakes it (the order saga, the vendor's answers, refunds, an
operator's SQL). The payload is the event's own feed cursor `<txid>.<id>`: the follower reads
until it has passed it. NOTIFY is delivered at commit and serialises committing notifiers on
one queue lock, so only the stream's four event types notify (one event in four of a paid
order's), not every event.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION paysaga_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('paysaga_events', NEW.txid::text || '.' || NEW.id::text);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW
        WHEN (NEW.type IN ('OrderPlaced', 'VendorAccepted', 'VendorRejected', 'PaymentRefunded'))
        EXECUTE FUNCTION paysaga_events_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS paysaga_events_notify()")
