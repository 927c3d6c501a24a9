"""a playground's notice for its owner: `playgrounds.notice` (a sentence on why it stopped,
such as its server being drained for maintenance; '' for none: every existing playground)

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("playgrounds", sa.Column("notice", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("playgrounds") as batch:
        batch.drop_column("notice")
