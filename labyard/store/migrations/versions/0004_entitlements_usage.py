"""entitlements (an account's plan comes from them), usage sessions, per-owner start locks

The `users.plan` column goes: an account that had a plan other than `free` gets a `manual`
entitlement to it, without end, so it keeps what it had.

Revision ID: 0004
Revises: 0003
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MIGRATED = "users.plan before migration 0004"


def upgrade() -> None:
    op.create_table(
        "entitlements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("once_key", sa.String(200), nullable=True, unique=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_entitlements_account_id", "entitlements", ["account_id"])
    op.create_table(
        "usage_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("launched_by", sa.String(16), nullable=False),
        sa.Column("content_key", sa.String(200), nullable=False),
        sa.Column("playground_id", sa.String(16), nullable=False),
        sa.Column("playground_name", sa.String(64), nullable=False),
        sa.Column("machines", sa.Integer(), nullable=False),
        sa.Column("restart", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.Column("machine_minutes", sa.Float(), nullable=True),
    )
    op.create_index(
        "ix_usage_sessions_account_started", "usage_sessions", ["account_id", "started_at"]
    )
    op.create_index("ix_usage_sessions_started_at", "usage_sessions", ["started_at"])
    op.create_index("ix_usage_sessions_playground_id", "usage_sessions", ["playground_id"])
    op.create_table(
        "start_locks",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("starts", sa.Integer(), nullable=False),
    )
    _plans_to_entitlements()
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): a batch copy of `users`
    # would drop the old table, and with foreign keys on that deletes every token.
    op.drop_column("users", "plan")


def _plans_to_entitlements() -> None:
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("plan", sa.String()))
    entitlements = sa.table(
        "entitlements",
        sa.column("account_id", sa.Integer()),
        sa.column("plan", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("source", sa.String()),
        sa.column("starts_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.plan).where(users.c.plan != "free"))
    now = datetime.now(UTC)
    grants = [
        {
            "account_id": user_id,
            "plan": plan,
            "kind": "manual",
            "source": MIGRATED,
            "starts_at": now,
            "created_at": now,
        }
        for user_id, plan in rows
    ]
    if grants:
        connection.execute(entitlements.insert(), grants)


def downgrade() -> None:
    op.add_column("users", sa.Column("plan", sa.String(32), nullable=False, server_default="free"))
    op.execute(
        "UPDATE users SET plan = (SELECT e.plan FROM entitlements e WHERE e.account_id = "
        "users.id AND e.kind = 'manual' AND e.revoked_at IS NULL ORDER BY e.id DESC LIMIT 1) "
        "WHERE EXISTS (SELECT 1 FROM entitlements e WHERE e.account_id = users.id "
        "AND e.kind = 'manual' AND e.revoked_at IS NULL)"
    )
    op.drop_table("start_locks")
    op.drop_table("usage_sessions")
    op.drop_table("entitlements")
