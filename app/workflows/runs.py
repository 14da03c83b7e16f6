"""Runs as the front end sees them: start one, read one, list them, cancel one."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from app.engine.schema import TERMINAL_RUN_STATUSES
from app.errors import Conflict, NotFound
from app.models import NodeRun, Workflow, WorkflowRun, utcnow
from app.workflows import node_runs
from app.workflows.store import TriggerTarget, get_definition, get_workflow


@dataclass(frozen=True)
class NodeRef:
    """ "Run node N of run R": the whole content of a node message."""

    run_id: str
    node_id: str
    #: Seconds to hold the message back (a retry hint; PostgreSQL's next_attempt_at is the truth).
    countdown: float | None = None
    #: True for a node after another one: served before entry nodes of new runs (DESIGN.md 7).
    continuation: bool = True


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    to_publish: list[NodeRef] = field(default_factory=list)


_INSERT_RUN = insert(cast(Table, WorkflowRun.__table__))


def start_run(
    session: Session,
    workflow_id: str,
    payload: Any,
    *,
    trigger_event_id: int | None = None,
    version: int | None = None,
    run_id: uuid.UUID | None = None,
    workflow: Workflow | TriggerTarget | None = None,
    source: str = "api",
    origin: dict[str, Any] | None = None,
) -> StartedRun:
    """Write the run (queued) and its entry node_run (pending); publish `to_publish` after
    commit. Callers that already hold the workflow row (or chose the run id) pass them in.
    `source` says how it started (webhook, schedule, api, mcp, agent, retry); `origin`, who."""
    workflow = workflow or get_workflow(session, workflow_id)
    if workflow.status != "active":
        raise Conflict(f"workflow {workflow_id!r} is {workflow.status}")
    version = version or workflow.version
    definition = get_definition(session, workflow_id, version)
    entry = definition.node(definition.entry_id)
    now = utcnow()
    run_uuid = run_id or uuid.uuid4()
    # Core inserts: two statements and none of the unit of work's bookkeeping (a hot path).
    session.execute(
        _INSERT_RUN,
        {
            "run_id": run_uuid,
            "workflow_id": workflow_id,
            "workflow_version": version,
            "status": "queued",
            "input": payload,
            "trigger_event_id": trigger_event_id,
            "source": source,
            "origin": origin,
            "created_at": now,
        },
    )
    node_runs.insert_rows(
        session, [node_runs.new_row(run_uuid, entry.id, entry.type, "pending", now)]
    )
    return StartedRun(str(run_uuid), [NodeRef(str(run_uuid), entry.id, continuation=False)])


def get_run(session: Session, run_id: str, *, with_nodes: bool = True) -> dict[str, Any]:
    """A run in the shape clients rely on (DESIGN.md: HTTP API shapes). Dashboards poll it, so
    it reads plain rows (Core, no identity map or ORM result machinery)."""
    connection = session.connection()  # Core rows: the ORM's result machinery is not needed
    run = connection.execute(_RUN_SHOWN, {"p_run_id": parse_run_id(run_id)}).first()
    if run is None:
        raise NotFound(f"no run with id {run_id!r}")
    shaped = run_to_dict(run)
    if with_nodes:
        rows = connection.execute(_NODE_RUNS_SHOWN, {"p_run_id": run.run_id}).all()
        definition = get_definition(session, run.workflow_id, run.workflow_version)
        order = {node.id: index for index, node in enumerate(definition.nodes)}
        rows = sorted(rows, key=lambda row: order.get(row.node_id, len(order)))
        shaped["nodes"] = [node_run_to_dict(row) for row in rows]
    return shaped


#: The columns run_to_dict and node_run_to_dict show, read without loading whole objects.
_RUN_FIELDS = (
    "run_id",
    "workflow_id",
    "workflow_version",
    "status",
    "input",
    "error",
    "source",
    "origin",
    "created_at",
    "started_at",
    "finished_at",
)
_NODE_RUN_FIELDS = (
    "node_id",
    "node_type",
    "status",
    "attempt",
    "output",
    "error",
    "started_at",
    "finished_at",
)
_runs, _node_runs = cast(Table, WorkflowRun.__table__), node_runs.table
_RUN_SHOWN = select(*(_runs.c[name] for name in _RUN_FIELDS)).where(
    _runs.c.run_id == bindparam("p_run_id")
)
_NODE_RUNS_SHOWN = select(*(_node_runs.c[name] for name in _NODE_RUN_FIELDS)).where(
    _node_runs.c.run_id == bindparam("p_run_id")
)


def list_runs(
    session: Session,
    *,
    workflow_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of runs (without nodes), newest first, and the cursor of the next page or None.

    Keyset pagination on (created_at, run_id): pages stay stable while new runs arrive, and a
    deep page costs what the first one does. An invalid cursor raises InvalidCursor.
    """
    query = select(WorkflowRun)
    if workflow_id is not None:
        query = query.where(WorkflowRun.workflow_id == workflow_id)
    if status is not None:
        query = query.where(WorkflowRun.status == status)
    if cursor is not None:
        created_at, run_id = decode_cursor(cursor)
        query = query.where(
            or_(
                WorkflowRun.created_at < created_at,
                and_(WorkflowRun.created_at == created_at, WorkflowRun.run_id < run_id),
            )
        )
    query = query.order_by(WorkflowRun.created_at.desc(), WorkflowRun.run_id.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].run_id) if more else None
    return [run_to_dict(run) for run in page], next_cursor


class InvalidCursor(ValueError):
    """A `cursor` this service did not hand out."""


def encode_cursor(created_at: datetime, run_id: uuid.UUID) -> str:
    """Opaque to clients: URL-safe base64 of the last row's sort key."""
    raw = json.dumps([created_at.isoformat(), str(run_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = json.loads(raw)
        parsed = datetime.fromisoformat(created_at), uuid.UUID(run_id)
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise InvalidCursor("not a cursor from a previous page") from None
    if parsed[0].tzinfo is None:
        raise InvalidCursor("not a cursor from a previous page")
    return parsed


def cancel_run(session: Session, run_id: str) -> bool:
    """Cancel a queued or running run; False when it had already finished. Running nodes finish,
    but nothing after them is started."""
    parsed = parse_run_id(run_id)
    run = session.get(WorkflowRun, parsed, with_for_update=True)
    if run is None:
        raise NotFound(f"no run with id {run_id!r}")
    if run.status in TERMINAL_RUN_STATUSES:
        return False
    now = utcnow()
    run.status, run.finished_at, run.error = "cancelled", now, "cancelled by request"
    node_runs.cancel_unfinished(session, parsed, now)
    session.flush()
    return True


def run_to_dict(run: WorkflowRun | Row[Any]) -> dict[str, Any]:
    return {
        "run_id": str(run.run_id),
        "workflow_id": run.workflow_id,
        "workflow_version": run.workflow_version,
        "status": run.status,
        "input": run.input,
        "error": run.error,
        "source": run.source,
        "origin": run.origin,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


def node_run_to_dict(row: NodeRun | Row[Any]) -> dict[str, Any]:
    duration_ms = None
    if row.started_at and row.finished_at:
        duration_ms = round((row.finished_at - row.started_at).total_seconds() * 1000, 3)
    return {
        "node_id": row.node_id,
        "type": row.node_type,
        "status": row.status,
        "attempt": row.attempt,
        "output": row.output,
        "error": row.error,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "duration_ms": duration_ms,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def parse_run_id(run_id: str) -> uuid.UUID:
    """A run id as stored; anything that is not a UUID names no run (404, not 422)."""
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound(f"no run with id {run_id!r}") from None
