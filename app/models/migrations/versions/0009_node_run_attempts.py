"""node runs: the history of earlier attempts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20 10:00:00

Each node's earlier attempts with their times and errors, for the run API and the run page
(issue 15). Written only when another attempt follows, so the column stays NULL on the
success path.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import JSONType

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.add_column(sa.Column("attempts", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("attempts")
