"""tools: workflow tool names, agent tools, tool messages, a run's source

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models.base import JSONType

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE_TOOL = "status = 'active' AND tool_name IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("tool_name", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_workflows_active_tool_name",
        "workflows",
        ["tool_name"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE_TOOL),
        sqlite_where=sa.text(_ACTIVE_TOOL),
    )
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("origin", JSONType, nullable=True))
    with op.batch_alter_table("agent_mcps") as batch:
        batch.add_column(sa.Column("tools", JSONType, nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("expose_as_tool", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("agent_messages") as batch:
        batch.add_column(sa.Column("tool_calls", JSONType, nullable=True))
        batch.add_column(sa.Column("tool_result", JSONType, nullable=True))
        batch.add_column(sa.Column("turn_id", sa.String(length=64), nullable=True))
    op.create_index("ix_agent_messages_turn", "agent_messages", ["turn_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_agent_messages_turn", table_name="agent_messages")
    with op.batch_alter_table("agent_messages") as batch:
        batch.drop_column("turn_id")
        batch.drop_column("tool_result")
        batch.drop_column("tool_calls")
    with op.batch_alter_table("agent_mcps") as batch:
        batch.drop_column("expose_as_tool")
        batch.drop_column("tools")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("origin")
        batch.drop_column("source")
    op.drop_index("uq_workflows_active_tool_name", table_name="workflows")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("tool_name")
