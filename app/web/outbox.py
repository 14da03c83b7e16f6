"""GET /api/outbox: the emails and SMS that nodes stored instead of sending (no credentials)."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from app.messaging.outbox import list_outbox
from app.web.api import endpoint
from app.web.context import web_context
from app.web.schemas import IsoTime, respond

bp = Blueprint("outbox", __name__)


class OutboxQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Only this run's messages.
    run_id: str | None = None
    limit: int = Field(50, ge=1, le=200)


class OutboxMessageOut(BaseModel):
    """A message as it would have been sent: `message` holds from, to, cc, reply_to, subject,
    body, html (email) or from, to, body (sms)."""

    id: int
    channel: Literal["email", "sms"]
    run_id: str | None = None
    workflow_id: str
    node_id: str
    message: dict[str, Any]
    created_at: IsoTime


class OutboxPage(BaseModel):
    """Newest first."""

    messages: list[OutboxMessageOut]


@endpoint(
    bp,
    "/api/outbox",
    summary="Messages email and SMS nodes stored instead of sending, newest first",
    query=OutboxQuery,
    responses={200: OutboxPage},
)
def outbox(query: OutboxQuery) -> ResponseReturnValue:
    with web_context().sessions() as session:
        messages = list_outbox(session, run_id=query.run_id, limit=query.limit)
    return respond(OutboxPage, {"messages": messages})
