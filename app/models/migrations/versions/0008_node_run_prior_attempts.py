"""node runs: the attempts made before a run was resumed from the node

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-15 10:00:00

A run retried from its failed node gives that node its retry policy again, counted from the
resume, while `attempt` keeps counting (issue 14).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.add_column(
            sa.Column("prior_attempts", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("prior_attempts")
