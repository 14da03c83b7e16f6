"""Reading the outbox: messages email and SMS nodes stored instead of sending (GET /api/outbox)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import OutboxMessage


def list_outbox(
    session: Session, *, run_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first; only `run_id`'s messages when given (an id that is no UUID has none)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if run_id is not None:
        try:
            query = query.where(OutboxMessage.run_id == uuid.UUID(run_id))
        except ValueError:
            return []
    return [outbox_message_to_dict(row) for row in session.scalars(query)]


def outbox_message_to_dict(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel": row.channel,
        "run_id": str(row.run_id) if row.run_id is not None else None,
        "workflow_id": row.workflow_id,
        "node_id": row.node_id,
        "message": row.message,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }
