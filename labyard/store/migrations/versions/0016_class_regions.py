"""a class pinned to a region: `classes.region` (a region of the regions file every start
of the class runs in; '' for none: each learner's country decides, as before), and
`pools.region`, the region a pool's playgrounds are warmed in (a pinned class's pool)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TABLES = ("classes", "pools")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("region", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("region")
