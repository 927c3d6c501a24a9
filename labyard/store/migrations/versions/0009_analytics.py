"""indexes for the analytics queries (issue 8 part 8)

Each analytics query is answered from one of these without reading the table: a period's
sessions by start (`period`), or in GROUP BY order for a long period on SQLite (`dims`,
`accounts`); the sessions across a period's start (`ended`); paid orders by payment time,
and by account for who pays when (`standing`); attempts by start and by solve.
docs/analytics.md says which query uses which.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_usage_sessions_period": (
        "usage_sessions",
        [
            "started_at",
            "restart",
            "machine_minutes",
            "plan",
            "launched_by",
            "playground_name",
            "account_id",
        ],
    ),
    "ix_usage_sessions_dims": (
        "usage_sessions",
        [
            "plan",
            "launched_by",
            "playground_name",
            "restart",
            "started_at",
            "machine_minutes",
        ],
    ),
    "ix_usage_sessions_accounts": ("usage_sessions", ["account_id", "plan", "started_at"]),
    "ix_usage_sessions_ended": ("usage_sessions", ["ended_at", "started_at"]),
    "ix_orders_status_paid_at": (
        "orders",
        ["status", "paid_at", "currency", "amount", "price_tier", "account_id"],
    ),
    "ix_orders_standing": (
        "orders",
        [
            "status",
            "account_id",
            "currency",
            "paid_at",
            "kind",
            "interval",
            "amount",
            "entitlement_id",
            "id",
        ],
    ),
    "ix_attempts_started_at": ("attempts", ["started_at", "content_key"]),
    "ix_attempts_state_finished": ("attempts", ["state", "finished_at", "content_key"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
