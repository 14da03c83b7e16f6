"""Runs as the front end sees them: start one, read one (every node of its definition, with
its attempts), list them, cancel one."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from app.engine.schema import TERMINAL_RUN_STATUSES, NodeDefinition, WorkflowDefinition
from app.errors import Conflict, NotFound
from app.logs import log_context_value
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
    #: The node's type where it is known for free (no read): routes I/O-bound types to the slow
    #: queue (app/tasks/dispatch.py); None goes to the fast queues. A hint, not identity.
    node_type: str | None = field(default=None, compare=False)


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
    origin = with_request_id(origin)
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
    return StartedRun(
        str(run_uuid), [NodeRef(str(run_uuid), entry.id, continuation=False, node_type=entry.type)]
    )


def with_request_id(origin: dict[str, Any] | None) -> dict[str, Any] | None:
    """`origin` naming the request (or node task) that starts the run, when there is one
    (app/web/request_id.py): its id is in the logs of the request and of every node."""
    request_id = log_context_value("request_id")
    return {**(origin or {}), "request_id": request_id} if request_id else origin


def get_run(session: Session, run_id: str, *, with_nodes: bool = True) -> dict[str, Any]:
    """A run in the shape clients rely on (DESIGN.md: HTTP API shapes; docs/api.md): with
    every node of its definition version, in definition order, each with its edges, so a
    client can draw the run from this answer alone. Dashboards poll it, so it is two reads of
    plain rows (Core, no identity map); the definition is the process's cached copy."""
    connection = session.connection()  # Core rows: the ORM's result machinery is not needed
    run = connection.execute(_RUN_SHOWN, {"p_run_id": parse_run_id(run_id)}).first()
    if run is None:
        raise NotFound(f"no run with id {run_id!r}")
    shaped = run_to_dict(run)
    if with_nodes:
        rows = connection.execute(_NODE_RUNS_SHOWN, {"p_run_id": run.run_id}).all()
        definition = get_definition(session, run.workflow_id, run.workflow_version)
        shaped["nodes"] = nodes_to_dicts(definition, rows)
    return shaped


def nodes_to_dicts(definition: WorkflowDefinition, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Every node of `definition` in its order, each merged with its node_run row when it has
    one; a node without a row has not started (`not_started`, attempt 0). A row whose node
    is not in the definition (it cannot happen) is shown after them rather than hidden."""
    by_id = {row.node_id: row for row in rows}
    shown = [node_to_dict(node, by_id.pop(node.id, None)) for node in definition.nodes]
    return shown + [node_run_to_dict(row) for row in by_id.values()]


def node_to_dict(node: NodeDefinition, row: Any | None) -> dict[str, Any]:
    shaped = node_run_to_dict(row) if row is not None else _not_started(node)
    shaped["type"] = node.type
    shaped["max_attempts"] = node.retry.max_attempts
    shaped.update(next=node.next_ids, then=node.then, **{"else": node.else_})
    return shaped


def _not_started(node: NodeDefinition) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "type": node.type,
        "status": "not_started",
        "attempt": 0,
        "next_attempt_at": None,
        "attempts": [],
        "output": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
    }


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
    "next_attempt_at",
    "attempts",
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
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of runs (without nodes), newest first, and the cursor of the next page or None
    (None: this page is the last, so `has_more` costs nothing: one row more is read).

    Keyset pagination on (created_at, run_id): pages stay stable while new runs arrive, and a
    deep page costs what the first one does. `since <= created_at < until` when given. An
    invalid cursor raises InvalidCursor.
    """
    query = select(WorkflowRun)
    if workflow_id is not None:
        query = query.where(WorkflowRun.workflow_id == workflow_id)
    if status is not None:
        query = query.where(WorkflowRun.status == status)
    if since is not None:
        query = query.where(WorkflowRun.created_at >= since)
    if until is not None:
        query = query.where(WorkflowRun.created_at < until)
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
    """A run without its nodes. `duration_ms` runs on (now - started) until the run ends;
    `delivery_id` and `retry_of` are read from `origin`, where accepting the run put them."""
    origin = run.origin if isinstance(run.origin, dict) else {}
    return {
        "run_id": str(run.run_id),
        "workflow_id": run.workflow_id,
        "workflow_version": run.workflow_version,
        "status": run.status,
        "input": run.input,
        "error": run.error,
        "source": run.source,
        "origin": run.origin,
        "delivery_id": origin.get("delivery_id") if run.source == "webhook" else None,
        "retry_of": origin.get("retry_of"),
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_ms": _duration_ms(run.started_at, run.finished_at or utcnow()),
    }


def node_run_to_dict(row: NodeRun | Row[Any]) -> dict[str, Any]:
    """A node_run row as shown; `next_attempt_at` only while it waits for a retry, and its
    earlier attempts oldest first."""
    return {
        "node_id": row.node_id,
        "type": row.node_type,
        "status": row.status,
        "attempt": row.attempt,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == "retrying" else None,
        "attempts": [_attempt_to_dict(entry) for entry in row.attempts or []],
        "output": row.output,
        "error": row.error,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "duration_ms": _duration_ms(row.started_at, row.finished_at),
    }


def _attempt_to_dict(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of node_runs.attempts, its times (the database's text) as ISO 8601 UTC."""
    return {
        "attempt": entry.get("attempt"),
        "started_at": _iso(_parse_time(entry.get("started_at"))),
        "finished_at": _iso(_parse_time(entry.get("finished_at"))),
        "error": entry.get("error"),
    }


def _parse_time(value: Any) -> datetime | None:
    """PostgreSQL writes `2026-12-01T10:00:00.5+00:00`, SQLite `2026-12-01 10:00:00.500000`
    (UTC, no offset)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _duration_ms(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started).total_seconds() * 1000, 3)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def parse_run_id(run_id: str) -> uuid.UUID:
    """A run id as stored; anything that is not a UUID names no run (404, not 422)."""
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound(f"no run with id {run_id!r}") from None
