"""daily roll-ups of the closed usage sessions (issue 8 part 8): `usage_days` by plan and
launcher, `playground_days` by playground name, each keyed by the UTC day a session started.
The analytics reads a period's sums from these instead of every session; usage.py adds each
session to them in the transaction that closes it. Filled here from the sessions closed so
far (the same sums as usage.rebuild_days).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("plan", sa.String(32), primary_key=True),
        sa.Column("launched_by", sa.String(16), primary_key=True),
        sa.Column("launches", sa.Integer(), nullable=False),
        sa.Column("machine_minutes", sa.Float(), nullable=False),
    )
    op.create_table(
        "playground_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("playground_name", sa.String(64), primary_key=True),
        sa.Column("launches", sa.Integer(), nullable=False),
        sa.Column("machine_minutes", sa.Float(), nullable=False),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    # UTC text on SQLite, timestamptz on PostgreSQL (store/models.py UTCDateTime).
    day = "date(started_at)" if sqlite else "CAST(started_at AT TIME ZONE 'UTC' AS DATE)"
    launches = "SUM(CASE WHEN restart THEN 0 ELSE 1 END)"
    rolls = (("usage_days", "plan, launched_by"), ("playground_days", "playground_name"))
    for table, keys in rolls:
        op.execute(
            f"INSERT INTO {table} (day, {keys}, launches, machine_minutes) "
            f"SELECT {day}, {keys}, {launches}, COALESCE(SUM(machine_minutes), 0) "
            f"FROM usage_sessions WHERE ended_at IS NOT NULL GROUP BY {day}, {keys}"
        )


def downgrade() -> None:
    op.drop_table("playground_days")
    op.drop_table("usage_days")
