"""paysaga_app: the rights the API and the worker need, and no more

The role that runs the migrations owns the tables; the API and the worker log in as members
of the group role `paysaga_app` (docker-compose.yml's `paysaga_api`), which may read and
write rows but own nothing: it cannot drop or alter a table, nor disable the audit trail's
trigger, and on `audit_log` and `events` it may only read and insert (append-only by
privilege as well as, for the audit trail, by trigger). The group is made here where it does
not exist yet (the migrating role then needs CREATEROLE; compose's init script makes it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """DO $$ BEGIN
  CREATE ROLE paysaga_app NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;  -- made already (compose's init, another database)
END $$"""
    )
    op.execute("GRANT USAGE ON SCHEMA public TO paysaga_app")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO paysaga_app")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO paysaga_app")
    # Tables and sequences later migrations make (as this role) come with the same rights.
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paysaga_app"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO paysaga_app"
    )
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM paysaga_app, PUBLIC")
    # The event log is append-only too: readers follow it by id and never miss one.
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON events FROM paysaga_app, PUBLIC")
    # Alembic's own bookkeeping: readable (readiness compares it), never written.
    op.execute("REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM paysaga_app")


def downgrade() -> None:
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        "REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM paysaga_app"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        "REVOKE USAGE, SELECT ON SEQUENCES FROM paysaga_app"
    )
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM paysaga_app")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM paysaga_app")
    op.execute("REVOKE USAGE ON SCHEMA public FROM paysaga_app")
