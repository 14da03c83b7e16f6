"""credentials and outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:39:00.753236
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import JSONType, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("message", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_messages_idempotency_key")),
    )
    op.create_index("ix_outbox_messages_run", "outbox_messages", ["run_id", "id"], unique=False)
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=True),
        sa.Column("agent_id", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(workflow_id IS NULL) <> (agent_id IS NULL)", name=op.f("ck_credentials_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_mcps.agent_id"],
            name=op.f("fk_credentials_agent_id_agent_mcps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.workflow_id"],
            name=op.f("fk_credentials_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("agent_id", "name", name=op.f("uq_credentials_agent_id")),
        sa.UniqueConstraint("workflow_id", "name", name=op.f("uq_credentials_workflow_id")),
    )
    with op.batch_alter_table("sent_effects") as batch_op:
        batch_op.add_column(sa.Column("output", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sent_effects") as batch_op:
        batch_op.drop_column("output")
    op.drop_table("credentials")
    op.drop_index("ix_outbox_messages_run", table_name="outbox_messages")
    op.drop_table("outbox_messages")
