"""webhook deliveries: the refused half of the delivery log

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00

The accepted half is `trigger_events` (unchanged).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_refusals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("scheme", sa.String(length=16), nullable=True),
        sa.Column("delivery_id", sa.String(length=256), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.workflow_id"],
            name=op.f("fk_webhook_refusals_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_refusals")),
    )
    op.create_index(
        "ix_webhook_refusals_workflow_received",
        "webhook_refusals",
        ["workflow_id", "received_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_refusals_received", "webhook_refusals", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_refusals_received", table_name="webhook_refusals")
    op.drop_index("ix_webhook_refusals_workflow_received", table_name="webhook_refusals")
    op.drop_table("webhook_refusals")
