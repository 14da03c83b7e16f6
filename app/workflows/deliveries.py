"""A workflow's webhook delivery log (DESIGN.md: Data, "a bounded log of webhook deliveries,
refused ones included"; issue 13, section 4).

Nothing is written on the accepted path: an accepted delivery is the `trigger_events` row its
webhook wrote (key `webhook:<delivery id>`), with its run. A refused one is a `webhook_refusals`
row, written by the front end in a statement of its own once its answer is decided. The log shows
both, newest first, for the last `days`; `prune_refusals` deletes older refusals, while
trigger_events rows stay (they are the idempotency record, kept at least 24 h by design).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import TriggerEvent, Workflow, WorkflowRun, utcnow
from app.models.tables import WebhookRefusal
from app.workflows.runs import InvalidCursor
from app.workflows.store import get_definition

#: The prefix of the trigger_events keys a webhook wrote (app/workflows/triggers.py stored_key).
WEBHOOK_KEY_PREFIX = "webhook:"
#: The status of an accepted delivery: its run was started (a replay writes no row).
ACCEPTED_STATUS = 202

#: Sort order at equal times: refusals before acceptances (descending), then by id.
Kind = Literal["accepted", "refused"]

_refusals = cast(Table, WebhookRefusal.__table__)
_events = cast(Table, TriggerEvent.__table__)
_runs = cast(Table, WorkflowRun.__table__)
_INSERT_REFUSAL = insert(_refusals)


@dataclass(frozen=True)
class Refusal:
    """A refused delivery to a workflow that exists, as the front end answered it."""

    workflow_id: str
    status: int
    reason: str
    scheme: str | None = None
    delivery_id: str | None = None
    source_address: str | None = None


def record_refusal(session: Session, refusal: Refusal, *, now: datetime | None = None) -> None:
    """One INSERT; the caller runs it on an autocommit session after the answer is decided."""
    session.execute(
        _INSERT_REFUSAL,
        {
            "workflow_id": refusal.workflow_id,
            "received_at": now or utcnow(),
            "scheme": _clip(refusal.scheme, 16),
            "delivery_id": _clip(refusal.delivery_id, 256),
            "status": refusal.status,
            "reason": _clip(refusal.reason, 64) or "unknown",
            "source_address": _clip(refusal.source_address, 64),
        },
    )


def prune_refusals(session: Session, *, days: float, now: datetime | None = None) -> int:
    """Delete refusals older than the retention; how many went."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    result = session.execute(delete(_refusals).where(_refusals.c.received_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def list_deliveries(
    session: Session,
    workflow_id: str,
    *,
    days: float,
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the workflow's deliveries of the last `days`, newest first, and the cursor of
    the next page or None. NotFound for an unknown workflow; InvalidCursor for a bad cursor.

    Keyset paging on (received_at, kind, id), each half read with its own LIMIT and merged here,
    so a deep page costs what the first one does and each half uses its own index.
    """
    known = select(Workflow.workflow_id).where(Workflow.workflow_id == workflow_id)
    if session.scalar(known) is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    after = decode_delivery_cursor(cursor) if cursor is not None else None
    cutoff = (now or utcnow()) - timedelta(days=days)
    rows = [
        *_accepted(session, workflow_id, cutoff, after, limit + 1),
        *_refused(session, workflow_id, cutoff, after, limit + 1),
    ]
    rows.sort(key=lambda row: (row[0], row[1], row[2]), reverse=True)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_delivery_cursor(*page[-1][:3]) if more else None
    return [shaped for *_, shaped in page], next_cursor


_Row = tuple[datetime, Kind, int, dict[str, Any]]


def _accepted(
    session: Session,
    workflow_id: str,
    cutoff: datetime,
    after: tuple[datetime, Kind, int] | None,
    limit: int,
) -> list[_Row]:
    query = (
        select(_events.c.id, _events.c.received_at, _events.c.idempotency_key, _events.c.run_id)
        .add_columns(_runs.c.workflow_version)
        .select_from(_events.outerjoin(_runs, _runs.c.run_id == _events.c.run_id))
        .where(
            _events.c.workflow_id == workflow_id,
            _events.c.idempotency_key.startswith(WEBHOOK_KEY_PREFIX, autoescape=True),
            _events.c.received_at >= cutoff,
        )
        .order_by(_events.c.received_at.desc(), _events.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(_before(after, "accepted", _events.c.received_at, _events.c.id))
    rows: list[_Row] = []
    for row in session.execute(query):
        scheme = None
        if row.workflow_version is not None:
            trigger = get_definition(session, workflow_id, row.workflow_version).trigger
            scheme = trigger.scheme
        shaped = _shape(
            row.received_at,
            status=ACCEPTED_STATUS,
            reason=None,
            scheme=scheme,
            delivery_id=row.idempotency_key.removeprefix(WEBHOOK_KEY_PREFIX),
            run_id=str(row.run_id) if row.run_id is not None else None,
            source_address=None,
        )
        rows.append((row.received_at, "accepted", row.id, shaped))
    return rows


def _refused(
    session: Session,
    workflow_id: str,
    cutoff: datetime,
    after: tuple[datetime, Kind, int] | None,
    limit: int,
) -> list[_Row]:
    query = (
        select(_refusals)
        .where(_refusals.c.workflow_id == workflow_id, _refusals.c.received_at >= cutoff)
        .order_by(_refusals.c.received_at.desc(), _refusals.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(_before(after, "refused", _refusals.c.received_at, _refusals.c.id))
    rows: list[_Row] = []
    for row in session.execute(query):
        shaped = _shape(
            row.received_at,
            status=row.status,
            reason=row.reason,
            scheme=row.scheme,
            delivery_id=row.delivery_id,
            run_id=None,
            source_address=row.source_address,
        )
        rows.append((row.received_at, "refused", row.id, shaped))
    return rows


def _before(
    after: tuple[datetime, Kind, int],
    kind: Kind,
    received_at: ColumnElement[Any],
    row_id: ColumnElement[Any],
) -> ColumnElement[bool]:
    """Rows of `kind` that sort after the cursor in (received_at, kind, id) descending."""
    at, after_kind, after_id = after
    if kind < after_kind:
        return received_at <= at
    if kind > after_kind:
        return received_at < at
    return or_(received_at < at, and_(received_at == at, row_id < after_id))


def _shape(received_at: datetime, **fields: Any) -> dict[str, Any]:
    return {"received_at": received_at.isoformat().replace("+00:00", "Z"), **fields}


def encode_delivery_cursor(received_at: datetime, kind: Kind, row_id: int) -> str:
    """Opaque to clients: URL-safe base64 of the last row's sort key."""
    raw = json.dumps([received_at.isoformat(), kind, row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_delivery_cursor(cursor: str) -> tuple[datetime, Kind, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received_at, kind, row_id = json.loads(raw)
        parsed = datetime.fromisoformat(received_at)
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise InvalidCursor("not a cursor from a previous page") from None
    if parsed.tzinfo is None or kind not in ("accepted", "refused") or type(row_id) is not int:
        raise InvalidCursor("not a cursor from a previous page")
    return parsed, kind, row_id


def _clip(value: str | None, width: int) -> str | None:
    """Fit a column; control characters (NUL among them) are dropped: PostgreSQL text refuses
    NUL, and a log line should not carry them either."""
    if value is None:
        return None
    cleaned = "".join(char for char in value if char.isprintable())
    return cleaned[:width] or None
