"""workflow schedules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 15:17:31.124253
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_schedules",
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("cron", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_fire_at", UTCDateTime(), nullable=False),
        sa.Column("last_fired_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.workflow_id"],
            name=op.f("fk_workflow_schedules_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_workflow_schedules")),
    )
    op.create_index(
        op.f("ix_workflow_schedules_next_fire_at"),
        "workflow_schedules",
        ["next_fire_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_workflow_schedules_next_fire_at"), table_name="workflow_schedules")
    op.drop_table("workflow_schedules")
