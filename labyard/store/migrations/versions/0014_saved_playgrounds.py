"""saved playgrounds (issue 10 part 3): a playground's machines saved as images plus the
manifest that starts them, owned by one account (`kind` `saved`, in its owner's catalog),
or made to start a fork (`kind` `fork`, removed once that playground is gone)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_playgrounds",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("source_playground_id", sa.String(16), nullable=False),
        sa.Column("playground_id", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_saved_playgrounds_owner_name"),
    )
    op.create_index("ix_saved_playgrounds_owner", "saved_playgrounds", ["owner"])


def downgrade() -> None:
    op.drop_table("saved_playgrounds")
